"""DMARC (RFC 7489, RFC 9091, RFC 9989): find and parse the policy record, the organizational domain, and
identifier alignment.

Policy discovery walks the DNS tree as RFC 9989 §4.10 says (the exact name, then at most seven labels, then one
label fewer each step up to the top-level domain), and the organizational domain found on that walk honours
``psd=``. The public suffix list (RFC 7489 §3.2) is kept for the send-time guard, which must answer without a
lookup, and for names no walk has been made for.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
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
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")  # RFC 5321 Keyword, rf= values
# RFC 9989 §4.10.1: a walk starting at more labels than this jumps to this many after the exact name.
_WALK_LABELS = 7


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
    np: str | None = None  # policy for non-existent subdomains (RFC 9091); sp, then p, apply when absent
    psd: str = "u"  # y: a public suffix domain; n: an organizational domain; u: unknown (RFC 9989 §4.7)
    testing: bool = False  # t=y (RFC 9989): the owner is testing; receivers may apply a milder policy
    # What a receiver tolerates but the owner should fix, for a person (e.g. "p= is missing: read as p=none").
    warnings: tuple[str, ...] = ()


def domain_name(name: str) -> str:
    """A domain name as alignment compares it: lower case, no root dot, no empty labels (``..a..b.`` → ``a.b``),
    because a name spelled with stray dots in a header or record is still the same name to a receiver."""
    return ".".join(label for label in normalize(name).split(".") if label)


def _report_uris(tag: str, value: str, warnings: list[str]) -> tuple[str, ...]:
    """The usable mailto: URIs. One bad URI among good ones is ignored, as receivers do, with a warning; a list
    with none usable is an error."""
    uris, bad = [], []
    for raw in filter(None, (part.strip() for part in value.split(","))):
        uri = _URI_SIZE.sub("", raw)
        if _MAILTO.match(uri):
            uris.append(uri)
        else:
            bad.append(raw)
    if not uris:
        if bad:
            raise DmarcRecordError(f"{tag}= has {bad[0]!r}, which is not a mailto: address")
        raise DmarcRecordError(f"{tag}= is empty")
    warnings.extend(f"{tag}= has {uri!r}, which is not a mailto: address; receivers skip it" for uri in bad)
    return tuple(uris)


def _policy_tag(tags: dict[str, str], tag: str) -> str | None:
    value = tags.get(tag)
    if value is None:
        return None
    if value.lower() not in POLICIES:
        raise DmarcRecordError(f"{tag}={value} is not one of none, quarantine, reject")
    return value.lower()


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
    warnings: list[str] = []
    rua = _report_uris("rua", tags["rua"], warnings) if "rua" in tags else ()
    try:
        p = _policy_tag(tags, "p")
        if p is None:
            raise DmarcRecordError("the p= tag (the policy: none, quarantine or reject) is missing")
        sp = _policy_tag(tags, "sp")
    except DmarcRecordError as exc:
        # RFC 7489 §6.6.3: a record whose p= is missing or invalid, or whose sp= is invalid, still counts as
        # p=none when it names at least one valid report address, so reports keep flowing.
        if not rua:
            raise
        warnings.append(f"{exc}; receivers read the record as p=none because it has a valid rua=")
        p, sp = "none", None
    np = _policy_tag(tags, "np")
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
    if "rf" in tags:
        formats = [part.strip().lower() for part in tags["rf"].split(":")]
        if not all(_KEYWORD.match(f) for f in formats):
            raise DmarcRecordError(f"rf={tags['rf']} must be report format names separated by colons, e.g. afrf")
        if "afrf" not in formats:
            warnings.append(f"rf={tags['rf']} names no format receivers know (afrf): no failure reports will come")
    psd = tags.get("psd", "u").lower()
    if psd not in ("y", "n", "u"):
        raise DmarcRecordError(f"psd={tags['psd']} must be y, n or u")
    testing = tags.get("t", "n").lower()
    if testing not in ("y", "n"):
        raise DmarcRecordError(f"t={tags['t']} must be y or n")
    # Unknown tags are ignored (§6.3), so they are kept but not judged.
    return DmarcRecord(
        p=p,
        sp=sp,
        adkim=modes["adkim"],
        aspf=modes["aspf"],
        pct=pct,
        rua=rua,
        ruf=_report_uris("ruf", tags["ruf"], warnings) if "ruf" in tags else (),
        tags=tags,
        text=text,
        np=np,
        psd=psd,
        testing=testing == "y",
        warnings=tuple(warnings),
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
    name = domain_name(domain)
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
    org_domain: str = ""  # RFC 9989 §4.10.2, from the same walk; the domain itself when the walk found nothing


def walk_targets(domain: str) -> list[str]:
    """RFC 9989 §4.10.1: the exact name, then (from eight labels or more) the last seven labels, then one label
    fewer at each step, down to the top-level domain."""
    labels = domain_name(domain).split(".")
    targets = [".".join(labels)]
    rest = labels[-_WALK_LABELS:] if len(labels) > _WALK_LABELS else labels[1:]
    while rest:
        targets.append(".".join(rest))
        rest = rest[1:]
    return targets


def _organizational(domain: str, found: list[tuple[str, DmarcRecord]]) -> str:
    """RFC 9989 §4.10.2, over the valid records of a walk (longest name first): the first psd=n is the
    organizational domain; a psd=y above the start makes the name one label below it one; otherwise the record
    with the fewest labels; the domain itself when there is none."""
    start = domain_name(domain)
    for owner, record in found:
        if record.psd == "n":
            return owner
        if record.psd == "y" and owner != start:
            return ".".join(start.split(".")[-(owner.count(".") + 2) :])
    return found[-1][0] if found else start


def lookup_dmarc(domain: str) -> DmarcLookup:
    """Policy discovery (RFC 9989 §4.10): the record at _dmarc.DOMAIN, or else the one at the organizational
    domain that the DNS tree walk finds. A DNS failure stops the walk: the missing answer might have been the
    record that decides."""
    domain = domain_name(domain)
    checked: list[str] = []
    found: list[tuple[str, DmarcRecord]] = []
    exact: DmarcLookup | None = None
    for owner in walk_targets(domain):
        name = f"_dmarc.{owner}"
        checked.append(name)
        answer = lookup_txt(name)
        if answer.failed:
            return DmarcLookup("error", found_at=owner, problem=answer.detail, checked=tuple(checked))
        if owner == domain:
            # At the domain itself near misses ("v=dmarc1", v not first) are kept so the owner hears what is
            # wrong instead of "missing"; above it only real records count (RFC 9989 §4.10.1 step 2).
            texts = tuple(t for t in answer.records if _looks_like_dmarc(t))
        else:
            texts = tuple(t for t in answer.records if re.match(r"v=DMARC1(;|\s|\Z)", t.lstrip()))
        if not texts:
            continue
        if len(texts) > 1:
            # Several records count as none (§4.10.1 step 3): the walk goes on, and the owner hears of it.
            if owner == domain:
                exact = DmarcLookup(
                    "multiple",
                    found_at=owner,
                    texts=texts,
                    problem=f"{name} has {len(texts)} DMARC records; receivers then ignore all of them",
                )
            continue
        try:
            record = replace(parse_dmarc(texts[0]), found_at=owner)
        except DmarcRecordError as exc:
            if owner == domain:
                exact = DmarcLookup("malformed", found_at=owner, texts=texts, problem=str(exc))
            continue
        found.append((owner, record))
        if record.psd == "n" or (record.psd == "y" and owner != domain):
            # psd=n, or psd=y above the start, settles the organizational domain (§4.10.2). Any other record
            # does not: a shorter name with a record further up would be the organizational domain.
            break
    org = _organizational(domain, found)
    if exact is not None:
        return replace(exact, checked=tuple(checked), org_domain=org)
    records = dict(found)
    # The domain's own record, else the organizational domain's; under a psd=y suffix with no record of its
    # own, the suffix's policy applies (RFC 9091).
    policy = records.get(domain) or records.get(org) or next((r for _, r in found if r.psd == "y"), None)
    if policy is None:
        return DmarcLookup("missing", checked=tuple(checked), problem="no DMARC record", org_domain=org)
    return DmarcLookup(
        "found", policy, found_at=policy.found_at, texts=(policy.text,), checked=tuple(checked), org_domain=org
    )


def walked_org_of(found: DmarcLookup) -> Callable[[str], str]:
    """The organizational domain of a name by the RFC 9989 tree walk, as receivers following it find it, walked
    once per name (the From domain's comes with `found`); the public suffix list when DNS does not answer."""
    # The walk started at the first _dmarc name it checked: that name's organizational domain is already known.
    orgs = {found.checked[0].removeprefix("_dmarc."): found.org_domain} if found.checked and found.org_domain else {}

    def org_of(name: str) -> str:
        name = domain_name(name)
        if name not in orgs:
            orgs[name] = lookup_dmarc(name).org_domain or organizational_domain(name)
        return orgs[name]

    return org_of


@dataclass(frozen=True)
class Alignment:
    dkim_aligned: bool
    spf_aligned: bool
    policy: str  # the p= or sp= that applies to this From domain; "none" without a record
    would_be_rejected: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _aligned(a: str, b: str, mode: str, org_of: Callable[[str], str]) -> bool:
    a, b = domain_name(a), domain_name(b)
    if mode == "s":
        return a == b  # RFC 7489 §3.1.1/§3.1.2 strict: exact match
    return org_of(a) == org_of(b)  # relaxed: same organizational domain


def applied_policy(from_domain: str, record: DmarcRecord | None, *, domain_exists: bool = True) -> str:
    if record is None:
        return "none"
    if record.found_at and domain_name(record.found_at) != domain_name(from_domain):
        # The record came from above the From domain: np= for a name that does not exist (RFC 9091 §4.1),
        # then sp= for subdomains (RFC 7489 §6.3), then p=.
        if not domain_exists and record.np:
            return record.np
        if record.sp:
            return record.sp
    return record.p


def dmarc_alignment(
    from_domain: str,
    dkim_domains: Sequence[str],
    return_path_domain: str | None,
    policy: DmarcRecord | None,
    *,
    org_of: Callable[[str], str] = organizational_domain,
) -> Alignment:
    """Would DMARC pass for mail From ``from_domain`` signed with d= ``dkim_domains`` and sent with MAIL FROM
    at ``return_path_domain`` (each assumed to authenticate)? pct= is ignored: we refuse at any percentage.
    ``org_of`` names the organizational domain: the public suffix list by default (no lookup), or the DNS
    tree walk where lookups are allowed.
    """
    adkim = policy.adkim if policy else "r"
    aspf = policy.aspf if policy else "r"
    dkim_aligned = any(_aligned(d, from_domain, adkim, org_of) for d in dkim_domains)
    spf_aligned = bool(return_path_domain) and _aligned(return_path_domain or "", from_domain, aspf, org_of)
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
    domain = domain_name(spec.name)
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
    alignment = dmarc_alignment(domain, dkim_domains, return_path, record, org_of=walked_org_of(found))
    ours = dmarc_recommendation(spec.dmarc_rua).split("rua=", 1)[1].lower()
    details.update(
        tags=record.tags,
        policy=alignment.policy,
        alignment=alignment.as_dict(),
        would_be_rejected=alignment.would_be_rejected,
        rua_includes_ours=ours in (uri.lower() for uri in record.rua),
        org_domain=found.org_domain,
        warnings=list(record.warnings),
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
    if record.warnings:
        message += " To fix in the record: " + "; ".join(record.warnings) + "."
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
