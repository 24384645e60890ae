"""DMARC (RFC 7489): find and parse the policy record, the organizational domain, and identifier alignment."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from publicsuffixlist import PublicSuffixList

from mail.errors import PostwerkError
from sending.domains.checks.spec import CheckResult, CheckStatus, DomainSpec, error_result
from sending.domains.checks.tags import TagListError, parse_tag_list
from sending.domains.checks.txt import lookup_txt, normalize

POLICIES = ("none", "quarantine", "reject")
# RFC 7489 §6.4: dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]
_URI_SIZE = re.compile(r"!\d+[kmgt]?\Z", re.IGNORECASE)
_MAILTO = re.compile(r"mailto:[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+\Z", re.IGNORECASE)
_FO = {"0", "1", "d", "s"}


class DmarcRecordError(PostwerkError, ValueError):
    """The record is not a valid DMARC record; the message says why, for a person."""


@dataclass(frozen=True)
class DmarcRecord:
    p: str  # none | quarantine | reject
    sp: str | None = None  # policy for subdomains; p applies when absent (RFC 7489 §6.3)
    adkim: str = "r"  # r(elaxed) | s(trict)
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()  # aggregate report URIs, size suffix removed
    ruf: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)  # every tag as published
    text: str = ""
    found_at: str = ""  # the domain whose _dmarc name held the record; "" when parsed from text alone


def _report_uris(tag: str, value: str) -> tuple[str, ...]:
    uris = []
    for raw in value.split(","):
        uri = _URI_SIZE.sub("", raw.strip())
        if not _MAILTO.match(uri):
            raise DmarcRecordError(f"{tag}= has {raw.strip()!r}, which is not a mailto: address")
        uris.append(uri)
    if not uris:
        raise DmarcRecordError(f"{tag}= is empty")
    return tuple(uris)


def parse_dmarc(text: str) -> DmarcRecord:
    """Parse a DMARC record (RFC 7489 §6.3, §6.4); raise DmarcRecordError saying what is wrong."""
    try:
        pairs = parse_tag_list(text)
    except TagListError as exc:
        raise DmarcRecordError(f"not a valid tag list: {exc}") from exc
    if not pairs:
        raise DmarcRecordError("the record is empty")
    # §6.4: the record must start with v=DMARC1 (the ABNF spells DMARC1 with exact %x codes).
    if pairs[0][0] != "v":
        raise DmarcRecordError("v=DMARC1 must be the first tag")
    if pairs[0][1] != "DMARC1":
        raise DmarcRecordError(f"v={pairs[0][1]} is not v=DMARC1")
    tags = dict(pairs)
    if "p" not in tags:
        raise DmarcRecordError("the p= tag (the policy: none, quarantine or reject) is missing")
    p = tags["p"].lower()
    if p not in POLICIES:
        raise DmarcRecordError(f"p={tags['p']} is not one of none, quarantine, reject")
    sp = tags.get("sp")
    if sp is not None:
        sp = sp.lower()
        if sp not in POLICIES:
            raise DmarcRecordError(f"sp={tags['sp']} is not one of none, quarantine, reject")
    modes = {}
    for tag in ("adkim", "aspf"):
        mode = tags.get(tag, "r").lower()
        if mode not in ("r", "s"):
            raise DmarcRecordError(f"{tag}={tags[tag]} must be r (relaxed) or s (strict)")
        modes[tag] = mode
    pct = 100
    if "pct" in tags:
        if not tags["pct"].isdigit() or not 0 <= int(tags["pct"]) <= 100:
            raise DmarcRecordError(f"pct={tags['pct']} must be a whole number from 0 to 100")
        pct = int(tags["pct"])
    if "ri" in tags and not tags["ri"].isdigit():
        raise DmarcRecordError(f"ri={tags['ri']} must be a number of seconds")
    if "fo" in tags and not {part.strip().lower() for part in tags["fo"].split(":")} <= _FO:
        raise DmarcRecordError(f"fo={tags['fo']} must be made of 0, 1, d, s separated by colons")
    # Unknown tags are ignored (§6.3), so they are kept but not judged.
    return DmarcRecord(
        p=p,
        sp=sp,
        adkim=modes["adkim"],
        aspf=modes["aspf"],
        pct=pct,
        rua=_report_uris("rua", tags["rua"]) if "rua" in tags else (),
        ruf=_report_uris("ruf", tags["ruf"]) if "ruf" in tags else (),
        tags=tags,
        text=text,
    )


def dmarc_recommendation(rua: str) -> str:
    """The record to publish when there is none: monitor only, reports to the platform."""
    address = rua if rua.lower().startswith("mailto:") else f"mailto:{rua}"
    return f"v=DMARC1; p=none; rua={address}"


def report_authorization_name(domain: str, rua: str) -> str | None:
    """Where the report address's domain must authorise reports about ``domain`` (RFC 7489 §7.1), or None when
    the address shares ``domain``'s organizational domain and receivers send reports without asking."""
    host = normalize(dmarc_recommendation(rua).rpartition("@")[2].split("!", 1)[0])  # without a size limit, §6.4
    if organizational_domain(host) == organizational_domain(domain):
        return None
    return f"{normalize(domain)}._report._dmarc.{host}"


@functools.cache
def _psl() -> PublicSuffixList:
    # The list bundled with the package: nothing is downloaded at run time.
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (``mail.acme.example`` → ``acme.example``)."""
    name = normalize(domain)
    return _psl().privatesuffix(name) or name


def _looks_like_dmarc(text: str) -> bool:
    # §6.6.3 discards records not starting with v=DMARC1; we keep near misses ("v=dmarc1", v not first)
    # so the owner hears what is wrong instead of "missing".
    return bool(re.match(r"\s*v\s*=", text, re.IGNORECASE)) or "dmarc" in text.lower()


@dataclass(frozen=True)
class DmarcLookup:
    status: str  # found | missing | malformed | multiple | error
    record: DmarcRecord | None = None
    found_at: str = ""  # the domain whose _dmarc name answered (or was looked at last)
    texts: tuple[str, ...] = ()
    problem: str = ""
    checked: tuple[str, ...] = ()  # the _dmarc names queried


def lookup_dmarc(domain: str) -> DmarcLookup:
    """Policy discovery (RFC 7489 §6.6.3): _dmarc.DOMAIN, then _dmarc.<organizational domain>."""
    domain = normalize(domain)
    candidates = [domain]
    org = organizational_domain(domain)
    if org != domain:
        candidates.append(org)
    checked: list[str] = []
    for owner in candidates:
        name = f"_dmarc.{owner}"
        checked.append(name)
        found = lookup_txt(name)
        if found.failed:
            # Do not fall back on a failure: the answer at the exact name might have been a record.
            return DmarcLookup("error", found_at=owner, problem=found.detail, checked=tuple(checked))
        texts = tuple(t for t in found.records if _looks_like_dmarc(t))
        if not texts:
            continue
        if len(texts) > 1:
            # §6.6.3 step 5: several records → no DMARC processing at all.
            return DmarcLookup(
                "multiple",
                found_at=owner,
                texts=texts,
                checked=tuple(checked),
                problem=f"{name} has {len(texts)} DMARC records; receivers then ignore all of them",
            )
        try:
            record = parse_dmarc(texts[0])
        except DmarcRecordError as exc:
            return DmarcLookup("malformed", found_at=owner, texts=texts, problem=str(exc), checked=tuple(checked))
        return DmarcLookup(
            "found", replace(record, found_at=owner), found_at=owner, texts=texts, checked=tuple(checked)
        )
    return DmarcLookup("missing", checked=tuple(checked), problem="no DMARC record")


@dataclass(frozen=True)
class Alignment:
    dkim_aligned: bool
    spf_aligned: bool
    policy: str  # the p= or sp= that applies to this From domain; "none" without a record
    would_be_rejected: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aligned(a: str, b: str, mode: str) -> bool:
    a, b = normalize(a), normalize(b)
    if mode == "s":
        return a == b  # RFC 7489 §3.1.1/§3.1.2 strict: exact match
    return organizational_domain(a) == organizational_domain(b)  # relaxed: same organizational domain


def applied_policy(from_domain: str, record: DmarcRecord | None) -> str:
    if record is None:
        return "none"
    # §6.3: sp= is for subdomains, i.e. when the record came from the organizational domain's _dmarc.
    if record.found_at and normalize(record.found_at) != normalize(from_domain) and record.sp:
        return record.sp
    return record.p


def dmarc_alignment(
    from_domain: str,
    dkim_domains: Sequence[str],
    return_path_domain: str | None,
    policy: DmarcRecord | None,
) -> Alignment:
    """Would DMARC pass for mail From ``from_domain`` signed with d= ``dkim_domains`` and sent with MAIL FROM
    at ``return_path_domain`` (each assumed to authenticate)? pct= is ignored: we refuse at any percentage.
    """
    adkim = policy.adkim if policy else "r"
    aspf = policy.aspf if policy else "r"
    dkim_aligned = any(_aligned(d, from_domain, adkim) for d in dkim_domains)
    spf_aligned = bool(return_path_domain) and _aligned(return_path_domain or "", from_domain, aspf)
    applied = applied_policy(from_domain, policy)
    return Alignment(
        dkim_aligned=dkim_aligned,
        spf_aligned=spf_aligned,
        policy=applied,
        would_be_rejected=applied in ("quarantine", "reject") and not (dkim_aligned or spf_aligned),
    )


def check_dmarc(
    spec: DomainSpec, *, dkim_ok: bool | None = None, return_path_spf_ok: bool | None = None
) -> CheckResult:
    """The DMARC record that governs ``spec.name`` and whether our mail would align with it.

    ``dkim_ok`` / ``return_path_spf_ok`` are the outcomes of those checks (``run_checks`` passes them);
    None assumes they pass, i.e. judges the setup as configured.
    """
    domain = normalize(spec.name)
    recommended = dmarc_recommendation(spec.dmarc_rua)
    found = lookup_dmarc(domain)
    details: dict[str, Any] = {"domain": domain, "checked": list(found.checked), "recommended": recommended}
    if found.status == "error":
        return error_result("dmarc", f"Could not check DMARC for {domain}: {found.problem}.", **details)
    if found.status == "missing":
        return CheckResult(
            "dmarc",
            CheckStatus.MISSING,
            f"{domain} has no DMARC record (looked at {' and '.join(found.checked)}). Sending works without one; "
            f"to publish one, add a TXT record at _dmarc.{domain} with the value: {recommended}",
            details,
        )
    details["found_at"] = found.found_at
    details["records"] = list(found.texts)
    if found.status == "multiple":
        return CheckResult(
            "dmarc",
            CheckStatus.WRONG,
            f"_dmarc.{found.found_at} has {len(found.texts)} DMARC records, so receivers ignore them all "
            "(RFC 7489 §6.6.3). Keep exactly one.",
            details,
        )
    if found.status == "malformed" or found.record is None:
        details["problem"] = found.problem
        return CheckResult(
            "dmarc",
            CheckStatus.WRONG,
            f"The DMARC record at _dmarc.{found.found_at} is invalid: {found.problem}. "
            f"Fix that, or replace the record with this monitoring-only one: {recommended}",
            details,
        )
    record = found.record
    dkim_domains = [domain] if spec.dkim_keys and dkim_ok is not False else []
    return_path = spec.return_path_host if return_path_spf_ok is not False else None
    alignment = dmarc_alignment(domain, dkim_domains, return_path, record)
    ours = dmarc_recommendation(spec.dmarc_rua).split("rua=", 1)[1].lower()
    details.update(
        tags=record.tags,
        policy=alignment.policy,
        alignment=alignment.as_dict(),
        would_be_rejected=alignment.would_be_rejected,
        rua_includes_ours=ours in (uri.lower() for uri in record.rua),
    )
    where = f"_dmarc.{found.found_at}"
    if alignment.would_be_rejected:
        reasons = []
        if not alignment.dkim_aligned:
            reasons.append("DKIM does not align" + ("" if dkim_domains else " (no valid DKIM key is published)"))
        if not alignment.spf_aligned:
            reasons.append(
                f"SPF does not align (return path {spec.return_path_host}, aspf={record.aspf})"
                if return_path
                else f"SPF for the return path {spec.return_path_host} does not pass"
            )
        return CheckResult(
            "dmarc",
            CheckStatus.WRONG,
            f"The DMARC policy in {where} is {alignment.policy}, and {' and '.join(reasons)}, so receivers would "
            "refuse our mail. Publish the DKIM key (or fix the return-path records) so at least one aligns.",
            details,
        )
    if alignment.dkim_aligned or alignment.spf_aligned:
        message = f"DMARC policy {alignment.policy} from {where}; our mail aligns."
    else:
        message = f"DMARC policy {alignment.policy} from {where}; our mail does not align yet, which p=none tolerates."
    return CheckResult("dmarc", CheckStatus.OK, message, details)


def check_dmarc_report(spec: DomainSpec) -> CheckResult | None:
    """The platform's authorisation to receive ``spec.name``'s aggregate reports at another organizational domain
    (RFC 7489 §7.1): a TXT record starting with v=DMARC1 that the platform's operator publishes. None when the
    report address is within the domain's own organizational domain and needs none."""
    name = report_authorization_name(spec.name, spec.dmarc_rua)
    if name is None:
        return None
    address = dmarc_recommendation(spec.dmarc_rua).split("rua=", 1)[1]
    host = name.split("._report._dmarc.", 1)[1]
    details: dict[str, Any] = {"name": name, "address": address, "publisher": "operator"}
    found = lookup_txt(name)
    if found.failed:
        return error_result(
            "dmarc_report", f"Could not check the DMARC report authorisation {name}: {found.detail}.", **details
        )
    if any(re.match(r"v=DMARC1(;|\s|\Z)", text) for text in found.records):
        return CheckResult("dmarc_report", CheckStatus.OK, f"{host} accepts DMARC reports for {spec.name}.", details)
    return CheckResult(
        "dmarc_report",
        CheckStatus.MISSING,
        f"Receivers send no DMARC aggregate reports for {spec.name} to {address} until the platform's operator "
        f'publishes a TXT record at {name} with the value "v=DMARC1" (or one at *._report._dmarc.{host} for every '
        "domain). Nothing to change in your own DNS for this.",
        details,
    )
