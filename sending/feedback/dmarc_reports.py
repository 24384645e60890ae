"""DMARC aggregate reports (RFC 7489 §7.2) arriving at the address of the recommended DMARC record.

Until they are parsed into results, they are kept: the inbound MX stores each one raw (inbound_intake, one
transaction before its 250) with type `dmarc_report`, and processing only reads who sent it and which domain it
is about, to attribute it to the organization, never classifying it as a bounce.
"""

from __future__ import annotations

import email
import email.policy
import io
import zipfile
import zlib
from xml.etree import ElementTree

from sending.feedback.inbound_intake import is_return_path_host
from sending.models import Domain, InboundMessage

# A report's XML is a few kilobytes per sending IP; more than this is not read (a decompression bomb).
MAX_XML_BYTES = 10 * 1024 * 1024


def _xml_documents(raw: bytes) -> list[bytes]:
    """The XML of each report attachment: gzip (.xml.gz), zip (.zip) or plain XML, decompressed with a cap."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    documents = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        name = (part.get_filename() or "").lower()
        ctype = part.get_content_type()
        if payload[:2] == b"\x1f\x8b" or name.endswith(".gz") or "gzip" in ctype:
            try:
                documents.append(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload, MAX_XML_BYTES))
            except zlib.error:
                continue
        elif payload[:4] == b"PK\x03\x04" or name.endswith(".zip") or "zip" in ctype:
            try:
                with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                    for info in archive.infolist()[:5]:
                        with archive.open(info) as member:
                            documents.append(member.read(MAX_XML_BYTES))
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError):
                continue
        elif ctype in ("text/xml", "application/xml") or name.endswith(".xml"):
            documents.append(payload[:MAX_XML_BYTES])
    return documents


def report_summary(raw: bytes) -> dict[str, str]:
    """Who reported, which domain the report is about, and its period; {} when no report XML is found."""
    for document in _xml_documents(raw):
        try:
            # expat (2.4.1 or later) refuses entity expansion bombs; ElementTree never fetches external entities.
            root = ElementTree.fromstring(document)  # noqa: S314
        except ElementTree.ParseError:
            continue
        summary = {
            "org_name": root.findtext("report_metadata/org_name", ""),
            "report_id": root.findtext("report_metadata/report_id", ""),
            "begin": root.findtext("report_metadata/date_range/begin", ""),
            "end": root.findtext("report_metadata/date_range/end", ""),
            "policy_domain": root.findtext("policy_published/domain", "").strip().rstrip(".").lower(),
        }
        if summary["policy_domain"]:
            return {key: value.strip()[:253] for key, value in summary.items()}
    return {}


def _attributed_domain(inbound: InboundMessage, policy_domain: str) -> Domain | None:
    """The Domain a report is about: the one whose return-path host it was sent to, else the policy domain's
    (or its nearest parent's) Domain. A report sent to one organization's host is never given to another."""
    for address in inbound.rcpt_to:
        owner = is_return_path_host(address.strip("<>").rpartition("@")[2])
        if isinstance(owner, Domain):
            return owner
    labels = policy_domain.split(".")
    names = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    return Domain.objects.filter(name__in=names).order_by("-name").first() if names else None


def dmarc_report_keep(inbound: InboundMessage) -> tuple[str, dict]:
    """The note and result for a stored report, and its organization set on ``inbound`` where known."""
    summary = report_summary(bytes(inbound.raw))
    note = "DMARC aggregate report: kept; its results are not parsed yet"
    if not summary:
        note = "a message to the DMARC report address without a readable aggregate report; kept as received"
    domain = _attributed_domain(inbound, summary.get("policy_domain", ""))
    if domain is not None:
        inbound.organization_id = domain.organization_id
        summary["domain"] = domain.name
    return note, summary
