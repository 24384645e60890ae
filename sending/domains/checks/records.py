"""The records an owner publishes for a sender domain, SPF merging, and the DMARC recommendation."""

from __future__ import annotations

import ipaddress
import re

from sending.domains.checks.dkim_record import dkim_record_value
from sending.domains.checks.dmarc import dmarc_recommendation, lookup_dmarc, report_authorization_name
from sending.domains.checks.inbound_mx import inbound_mx_records
from sending.domains.checks.spec import DomainSpec, ExpectedRecord
from sending.domains.checks.txt import Lookup, LookupStatus, lookup_txt

__all__ = ["dmarc_recommendation", "expected_records", "find_spf_records", "spf_mechanism", "spf_merge"]

VERIFICATION_PREFIX = "postwerk-verification="
# RFC 7208 §4.5: an SPF record is a TXT record starting with "v=spf1" followed by a space or its end.
_SPF_RECORD = re.compile(r"v=spf1(?: |\Z)", re.IGNORECASE)
_ALL = re.compile(r"[+\-~?]?all\Z", re.IGNORECASE)
# RFC 7208 §12: modifier = name "=" macro-string, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
_MODIFIER = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*=")


def verification_value(token: str) -> str:
    return f"{VERIFICATION_PREFIX}{token}"


def is_spf_record(text: str) -> bool:
    return bool(_SPF_RECORD.match(text))


def find_spf_records(domain: str) -> Lookup:
    """The v=spf1 TXT records at ``domain`` (MISSING when TXT records exist but none is SPF)."""
    found = lookup_txt(domain)
    if not found.found:
        return found
    records = [text for text in found.records if is_spf_record(text)]
    if not records:
        return Lookup(found.name, "TXT", LookupStatus.MISSING, detail=f"{found.name} has no v=spf1 record")
    return Lookup(found.name, "TXT", LookupStatus.FOUND, records=records)


def spf_mechanism(spec: DomainSpec) -> str:
    """``include:<platform include>``, or ``ip4:``/``ip6:`` terms for the sending IPs (space-separated)."""
    if spec.spf_include:
        return f"include:{spec.spf_include.strip().rstrip('.')}"
    terms = []
    for raw in spec.sending_ips:
        ip = ipaddress.ip_address(raw.strip())
        terms.append(f"ip{ip.version}:{ip.compressed}")
    if not terms:
        raise ValueError("DomainSpec has neither spf_include nor sending_ips")
    return " ".join(terms)


def _bare(term: str) -> str:
    term = term.lower()
    return term[1:] if term.startswith("+") else term  # "+" is the default qualifier (RFC 7208 §4.6.2)


def spf_merge(existing: str | None, mechanism: str) -> str:
    """Add ``mechanism`` (one or more space-separated terms) to an existing SPF record, never a second record.

    The new terms go just before the ``all`` mechanism or the ``redirect=`` modifier (RFC 7208 §5.1, §6.1:
    terms after ``all`` are never reached, and ``redirect`` applies only when nothing matched), or after the
    last mechanism when there is neither. Everything else, spacing included, is kept. Terms already present
    are not added twice. With no record, the suggestion is ``v=spf1 <mechanism> ~all``.
    """
    terms = mechanism.split()
    if not terms:
        raise ValueError("spf_merge needs a mechanism")
    if existing is None or not existing.strip():
        return f"v=spf1 {' '.join(terms)} ~all"
    spans = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", existing)]
    if spans[0][2].lower() != "v=spf1":
        raise ValueError(f"not an SPF record: {existing!r}")
    present = {_bare(term) for _, _, term in spans[1:]}
    missing = [term for term in terms if _bare(term) not in present]
    if not missing:
        return existing
    addition = " ".join(missing)
    for start, _end, term in spans[1:]:
        if _ALL.match(term) or term.lower().startswith("redirect="):
            return f"{existing[:start]}{addition} {existing[start:]}"
    mechanisms = [span for span in spans[1:] if not _MODIFIER.match(span[2])]
    after = mechanisms[-1][1] if mechanisms else spans[0][1]
    return f"{existing[:after]} {addition}{existing[after:]}"


def expected_records(spec: DomainSpec) -> list[ExpectedRecord]:
    """What the owner must publish; the SPF value is merged into the record already in DNS (read now)."""
    records = [
        ExpectedRecord(
            "ownership",
            "TXT",
            spec.name,
            verification_value(spec.verification_token),
            "Proves you control the domain. Other TXT records at this name can stay.",
        )
    ]
    for key in spec.dkim_keys:
        note = "DKIM public key (RFC 6376)."
        if key.algorithm == "ed25519":
            note = "Optional second DKIM key, Ed25519 (RFC 8463); keep the RSA key too, as not every receiver knows it."
        records.append(ExpectedRecord("dkim", "TXT", key.record_name(spec.name), dkim_record_value(key), note))
    mechanism = spf_mechanism(spec)
    records.append(
        ExpectedRecord(
            "return_path",
            "CNAME",
            spec.return_path_host,
            spec.platform_return_path_target,
            "Bounces come back to us through this name, and its SPF follows the CNAME. If a CNAME is impossible "
            f"there, publish MX records to {', '.join(spec.platform_mx_hosts)} and a TXT record "
            f"'v=spf1 {mechanism} -all' at {spec.return_path_host} instead.",
        )
    )
    records.append(_spf_record(spec, mechanism))
    dmarc = _dmarc_record(spec)
    if dmarc is not None:
        records.append(dmarc)
    authorization = report_authorization_name(spec.name, spec.dmarc_rua)
    if authorization is not None:
        records.append(
            ExpectedRecord(
                "dmarc_report",
                "TXT",
                authorization,
                "v=DMARC1",
                "Published by the platform's operator, not by you: it lets receivers send this domain's DMARC "
                "reports to an address at another domain (RFC 7489 §7.1). A wildcard "
                f"*._report._dmarc.{authorization.split('._report._dmarc.', 1)[1]} covers every domain.",
                publisher="operator",
            )
        )
    records.extend(inbound_mx_records(spec))
    return records


def _spf_record(spec: DomainSpec, mechanism: str) -> ExpectedRecord:
    found = find_spf_records(spec.name)
    if found.failed:
        return ExpectedRecord(
            "spf",
            "TXT",
            spec.name,
            spf_merge(None, mechanism),
            f"Could not read your current SPF record ({found.detail}). If you already have one, add "
            f"{mechanism} to it before its 'all' term instead: a domain must have only one SPF record.",
        )
    if not found.found:
        return ExpectedRecord("spf", "TXT", spec.name, spf_merge(None, mechanism), "You have no SPF record yet.")
    merged = spf_merge(found.records[0], mechanism)
    if len(found.records) > 1:
        note = f"You publish {len(found.records)} SPF records, which breaks SPF: replace them all with this one."
    elif merged == found.records[0]:
        note = "Your SPF record already includes us; nothing to change."
    else:
        note = f"Replace your SPF record '{found.records[0]}' with this one (never publish a second SPF record)."
    return ExpectedRecord("spf", "TXT", spec.name, merged, note)


def _dmarc_record(spec: DomainSpec) -> ExpectedRecord | None:
    found = lookup_dmarc(spec.name)
    if found.status == "found":
        return None
    value = dmarc_recommendation(spec.dmarc_rua)
    name = f"_dmarc.{spec.name}"
    if found.status == "error":
        note = f"Could not check for a DMARC record ({found.problem}). Publish this only if you have none."
    elif found.status in ("malformed", "multiple"):
        note = (
            f"Your DMARC record at _dmarc.{found.found_at} is unusable ({found.problem}): fix that, or replace "
            "it with this monitoring-only record."
        )
        name = f"_dmarc.{found.found_at}"
    else:
        note = "Recommended: monitoring only (p=none), with aggregate reports to us. Tighten p= later."
    return ExpectedRecord("dmarc", "TXT", name, value, note)
