"""DMARC aggregate reports (RFC 7489 §7.2) and SMTP TLS reports (RFC 8460) arriving at the address of the
recommended DMARC record.

The inbound MX stores each one raw (inbound_intake, one transaction before its 250) with type `dmarc_report`;
processing reads it with parsedmarc (XML, gzip, zip, TLS-RPT JSON), attributes it to the sender domain it is
about and keeps its rows (`DmarcReport`, `DmarcReportRow`). It is never classified as a bounce.
"""

from __future__ import annotations

import email
import email.policy
import io
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import parsedmarc
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from mail.dns import reverse_name
from sending.feedback.inbound_intake import is_return_path_host
from sending.models import DmarcReport, DmarcReportRow, Domain, InboundMessage

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


@dataclass
class ReadReport:
    """What a report says, whatever its kind: enough to attribute and store it."""

    kind: str  # DmarcReport.Kind
    reporter: str
    reporter_email: str
    report_id: str
    begin: datetime
    end: datetime
    policy_domain: str
    policy: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # aggregate: parsedmarc's records
    details: list[dict[str, Any]] = field(default_factory=list)  # TLS: parsedmarc's policies


def _epoch(value: str) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value.strip().isdigit() else None


def report_read(raw: bytes) -> ReadReport | None:
    """The report in a message, or None when it holds none that parsedmarc can read."""
    try:
        # offline: no GeoIP database or reverse-DNS map is downloaded, and no lookups are made from here.
        parsed = parsedmarc.parse_report_email(raw, offline=True, strip_attachment_payloads=True)
    except Exception:  # noqa: BLE001 - a third-party parser on hostile input: any failure means "unreadable"
        return None
    report = parsed.get("report") or {}
    if parsed.get("report_type") == "aggregate":
        meta, policy = report.get("report_metadata", {}), report.get("policy_published", {})
        # The XML's own epoch seconds: parsedmarc renders them in the process's local time zone.
        summary = report_summary(raw)
        begin, end = _epoch(summary.get("begin", "")), _epoch(summary.get("end", ""))
        if begin is None or end is None:
            return None
        return ReadReport(
            kind=DmarcReport.Kind.AGGREGATE,
            reporter=str(meta.get("org_name") or "")[:253],
            reporter_email=str(meta.get("org_email") or "")[:320],
            report_id=str(meta.get("report_id") or "")[:253],
            begin=begin,
            end=end,
            policy_domain=str(policy.get("domain") or "").strip().rstrip(".").lower(),
            policy={k: v for k, v in policy.items() if v is not None},
            rows=list(report.get("records") or []),
        )
    if parsed.get("report_type") == "smtp_tls":
        begin = parse_datetime(str(report.get("begin_date") or ""))
        end = parse_datetime(str(report.get("end_date") or ""))
        policies = list(report.get("policies") or [])
        if begin is None or end is None or not policies:
            return None
        return ReadReport(
            kind=DmarcReport.Kind.TLS,
            reporter=str(report.get("organization_name") or "")[:253],
            reporter_email=str(report.get("contact_info") or "")[:320],
            report_id=str(report.get("report_id") or "")[:253],
            begin=begin,
            end=end,
            policy_domain=str(policies[0].get("policy_domain") or "").strip().rstrip(".").lower(),
            details=policies,
        )
    return None


def _row(report: DmarcReport, record: dict[str, Any], names: dict[str, str]) -> DmarcReportRow:
    source, evaluated = record.get("source", {}), record.get("policy_evaluated", {})
    alignment, identifiers = record.get("alignment", {}), record.get("identifiers", {})
    ip = str(source.get("ip_address") or "")
    if ip not in names:
        names[ip] = reverse_name(ip)
    results = record.get("auth_results", {})
    return DmarcReportRow(
        report=report,
        source_ip=ip,
        reverse_name=names[ip][:253],
        count=int(record.get("count") or 0),
        header_from=str(identifiers.get("header_from") or "")[:253],
        envelope_from=str(identifiers.get("envelope_from") or "")[:253],
        disposition=str(evaluated.get("disposition") or "")[:12],
        dkim_aligned=bool(alignment.get("dkim")),
        spf_aligned=bool(alignment.get("spf")),
        dmarc_pass=bool(alignment.get("dmarc")),
        dkim_results=[{k: r.get(k) for k in ("domain", "selector", "result")} for r in results.get("dkim", [])],
        spf_results=[{k: r.get(k) for k in ("domain", "scope", "result")} for r in results.get("spf", [])],
        from_platform=ip in set(settings.POSTWERK_SENDING_IPS),
    )


def _store(inbound: InboundMessage, domain: Domain, read: ReadReport) -> tuple[DmarcReport | None, int]:
    """The report and its rows in one transaction; (None, 0) when this report was kept before."""
    names: dict[str, str] = {}
    rows_total = 0
    try:
        with transaction.atomic():
            report = DmarcReport.objects.create(
                organization_id=domain.organization_id,
                domain=domain,
                inbound=inbound,
                kind=read.kind,
                reporter=read.reporter,
                reporter_email=read.reporter_email,
                report_id=read.report_id,
                begin=read.begin,
                end=read.end,
                policy=read.policy,
                details=read.details,
            )
            rows = [_row(report, record, names) for record in read.rows if record.get("source", {}).get("ip_address")]
            DmarcReportRow.objects.bulk_create(rows, batch_size=500)
            rows_total = len(rows)
    except IntegrityError:
        return None, 0
    return report, rows_total


def dmarc_report_keep(inbound: InboundMessage) -> tuple[str, dict]:
    """Read and store the report; the note and result for the inbound message, and its organization set on
    ``inbound`` where known."""
    raw = bytes(inbound.raw)
    read = report_read(raw)
    summary = (
        report_summary(raw)
        if read is None
        else {
            "kind": read.kind,
            "org_name": read.reporter,
            "report_id": read.report_id,
            "begin": read.begin.isoformat(),
            "end": read.end.isoformat(),
            "policy_domain": read.policy_domain,
        }
    )
    domain = _attributed_domain(inbound, summary.get("policy_domain", ""))
    if domain is not None:
        inbound.organization_id = domain.organization_id
        summary["domain"] = domain.name
    if read is None:
        return (
            "a message to the DMARC report address without a readable aggregate or TLS report; kept as received",
            summary,
        )
    if domain is None:
        return (
            f"{read.kind} report about {read.policy_domain}, which is no sender domain here; kept as received",
            summary,
        )
    report, rows = _store(inbound, domain, read)
    if report is None:
        return f"{read.kind} report {read.report_id} from {read.reporter} was kept before; not counted twice", summary
    summary["report"] = report.pk
    kind = "DMARC aggregate" if read.kind == DmarcReport.Kind.AGGREGATE else "SMTP TLS"
    return f"{kind} report from {read.reporter} read: {rows or len(read.details)} rows kept", summary
