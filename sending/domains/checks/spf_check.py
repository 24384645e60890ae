"""SPF (RFC 7208) for the From domain and the return-path domain, evaluated by pyspf for our sending IPs.

pyspf is the reference Python SPF implementation: includes, redirect=, macros (§7), the 10-lookup limit
and the void-lookup limit of 2 (§4.6.4), and permerror for several v=spf1 records (§4.5). It asks DNS
through a module-level ``DNSLookup`` hook; we install one that uses ``mail.dns.resolver()``, so
``POSTWERK_DNS_SERVERS`` answers and a timeout or SERVFAIL becomes temperror, never none or fail.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

import dns.exception
import dns.name
import dns.resolver
import spf
from django.conf import settings

from mail import dns as postwerk_dns
from sending.domains.checks.records import find_spf_records, spf_mechanism, spf_merge
from sending.domains.checks.spec import CheckResult, CheckStatus, DomainSpec, error_result
from sending.domains.checks.txt import lookup, normalize

# RFC 7208 §4.6.4 suggests at least 20 seconds for the whole evaluation.
TOTAL_SPF_TIME = 20.0
# When no sending IP is configured we still evaluate once, from an address that is never ours
# (TEST-NET-1, RFC 5737), to find none/permerror/temperror.
_PROBE_IP = "192.0.2.1"

SpfScope = Literal["from", "return_path"]


def _dns_lookup(name: str, qtype: str, strict: object = True, timeout: float = 30) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNS hook: ``[((name, qtype), value), ...]``; [] for NXDOMAIN/NODATA; TempError otherwise.

    Values follow pyspf's own dnspython driver: addresses as text, MX as (preference, exchange), TXT as
    the tuple of character-strings (pyspf concatenates them, RFC 7208 §3.3). CNAMEs are followed by the
    resolver, so answers are filed under the name asked for.
    """
    resolver = postwerk_dns.resolver()
    try:
        answer = resolver.resolve(name, qtype, search=False, lifetime=max(0.1, min(float(timeout), resolver.lifetime)))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong):
        return []  # a macro expanded into something that is not a name: nothing can be there
    except dns.exception.DNSException as exc:  # timeout, SERVFAIL (NoNameservers), anything else
        raise spf.TempError(f"DNS {qtype} {name}: {exc}") from exc
    values: list[tuple[tuple[str, str], Any]] = []
    for rdata in answer:
        if qtype in ("A", "AAAA"):
            values.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            values.append(((name, qtype), (rdata.preference, rdata.exchange.to_text(omit_final_dot=True))))
        elif qtype == "PTR":
            values.append(((name, qtype), rdata.target.to_text(omit_final_dot=True)))
        elif qtype in ("TXT", "SPF"):
            values.append(((name, qtype), rdata.strings))
    return values


# The hook: pyspf looks ``DNSLookup`` up in its module globals on every query.
spf.DNSLookup = _dns_lookup


@dataclass(frozen=True)
class SpfEvaluation:
    domain: str
    ip: str
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    explanation: str
    problem: str  # pyspf's reason for a permerror/temperror, else ""
    dns_lookups: int  # terms that counted towards the limit of 10 (RFC 7208 §4.6.4)
    void_lookups: int


def evaluate_spf(domain: str, ip: str) -> SpfEvaluation:
    """check_host(ip, domain, postmaster@domain) per RFC 7208 §4, through the configured resolver."""
    query = spf.query(
        i=ip,
        s=f"postmaster@{domain}",
        h=domain,
        receiver=getattr(settings, "POSTWERK_HOSTNAME", "postwerk"),
        strict=True,  # RFC 7208 limits are errors, not warnings
        timeout=float(settings.POSTWERK_DNS_TIMEOUT),
        querytime=TOTAL_SPF_TIME,
    )
    result, _code, explanation = query.check()
    return SpfEvaluation(
        domain=domain,
        ip=ip,
        result=result,
        explanation=explanation,
        problem=getattr(query, "prob", "") if result in ("permerror", "temperror") else "",
        dns_lookups=query.lookups,
        void_lookups=query.void_lookups,
    )


def check_spf(spec: DomainSpec, scope: SpfScope = "from") -> CheckResult:
    """SPF of the From domain (``scope="from"``) or of the return-path host, for every sending IP."""
    domain = spec.name if scope == "from" else spec.return_path_host
    mechanism = spf_mechanism(spec)
    details: dict[str, Any] = {"domain": domain, "scope": scope, "mechanism": mechanism}
    published = find_spf_records(domain)
    if published.failed:
        return error_result("spf", f"Could not read SPF for {domain}: {published.detail}.", **details)
    records = published.records
    details["records"] = records

    ips = list(spec.sending_ips)
    evaluations = [evaluate_spf(domain, ip) for ip in (ips or [_PROBE_IP])]
    details["evaluated"] = bool(ips)
    if ips:
        details["results"] = {e.ip: e.result for e in evaluations}
    details["dns_lookups"] = max(e.dns_lookups for e in evaluations)
    details["void_lookups"] = max(e.void_lookups for e in evaluations)

    if temp := next((e for e in evaluations if e.result == "temperror"), None):
        return error_result(
            "spf",
            f"Could not evaluate SPF for {domain}: {temp.problem or temp.explanation}.",
            **details,
            result="temperror",
        )
    if perm := next((e for e in evaluations if e.result == "permerror"), None):
        details["result"] = "permerror"
        details["problem"] = perm.problem
        return CheckResult("spf", CheckStatus.WRONG, _permerror_message(domain, records, mechanism, perm), details)
    if all(e.result == "none" for e in evaluations):
        details["result"] = "none"
        return CheckResult("spf", CheckStatus.MISSING, _missing_message(spec, scope, domain, mechanism), details)
    if not ips:
        # Nothing to evaluate for: the record is sound; accept it when it names our mechanism itself.
        details["result"] = None
        merged = spf_merge(records[0] if records else None, mechanism)
        if records and merged == records[0]:
            return CheckResult("spf", CheckStatus.OK, f"The SPF record of {domain} includes {mechanism}.", details)
        return CheckResult(
            "spf", CheckStatus.WRONG, f"The SPF record of {domain} lacks {mechanism}. Change it to: {merged}", details
        )
    failing = [e for e in evaluations if e.result != "pass"]
    if not failing:
        details["result"] = "pass"
        return CheckResult("spf", CheckStatus.OK, f"SPF of {domain} authorizes {', '.join(ips)}.", details)
    details["result"] = failing[0].result
    return CheckResult("spf", CheckStatus.WRONG, _not_authorized_message(domain, records, mechanism, failing), details)


def check_spf_from(spec: DomainSpec) -> CheckResult:
    return check_spf(spec, "from")


def check_spf_return_path(spec: DomainSpec) -> CheckResult:
    result = check_spf(spec, "return_path")
    if result.status not in (CheckStatus.MISSING, CheckStatus.WRONG):
        return result
    cname = lookup(spec.return_path_host, "CNAME")
    if not cname.found:
        return result  # MX + TXT at the host: the owner's own record, as the message says
    message = _cname_message(spec, cname.records[0], result)
    details = {**result.details, "cname": cname.records[0]}
    if normalize(cname.records[0]) == normalize(spec.platform_return_path_target):
        details["publisher"] = "operator"  # the CNAME is right: the record to fix is the platform's own
    return CheckResult(result.name, result.status, message, details)


def _cname_message(spec: DomainSpec, cname: str, result: CheckResult) -> str:
    """A return path that is a CNAME takes its SPF from the CNAME's target. When that is the platform's host, the
    record to fix is the operator's, not the owner's: saying "add a CNAME" (present, as the return-path check
    reports just above) or "fix the record" (one the owner cannot edit) would send them in circles."""
    host, target = normalize(spec.return_path_host), normalize(spec.platform_return_path_target)
    if cname != target:
        return (
            f"{host} is a CNAME to {cname}, not to {target}, so its SPF is not ours. Change the CNAME target to "
            f"{target} (see the return path check); SPF then follows it."
        )
    mechanism = spf_mechanism(spec)
    fix = f"a TXT record at {target} with the value: v=spf1 {mechanism} -all"
    if spec.spf_include and spec.sending_ips:
        ips = " ".join(f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in spec.sending_ips)
        fix += f", and a TXT record at {spec.spf_include} with the value: v=spf1 {ips} -all"
    elif spec.spf_include:
        fix += f", and a TXT record at {spec.spf_include} listing the platform's sending IPs"
    status = "has no SPF record" if result.status == CheckStatus.MISSING else "has an SPF record that fails"
    detail = result.details.get("problem") or ""
    return (
        f"{host} is a CNAME to {target}, as it should be: nothing to change on your side. The platform's host "
        f"{target} {status}{f' ({detail})' if detail else ''}. The Postwerk operator must publish {fix}"
    )


def _missing_message(spec: DomainSpec, scope: SpfScope, domain: str, mechanism: str) -> str:
    if scope == "from":
        return f"{domain} has no SPF record. Add a TXT record at {domain} with the value: {spf_merge(None, mechanism)}"
    return (
        f"The return-path host {domain} has no SPF record. Add a CNAME at {domain} pointing to "
        f"{spec.platform_return_path_target} (SPF then follows it), or, if you use MX records there instead, a "
        f"TXT record at {domain} with the value: v=spf1 {mechanism} -all"
    )


def _permerror_message(domain: str, records: list[str], mechanism: str, evaluation: SpfEvaluation) -> str:
    problem = evaluation.problem or evaluation.explanation
    text = f"The SPF record of {domain} is broken (permerror: {problem})."
    lowered = problem.lower()
    if len(records) > 1:
        # RFC 7208 §4.5: more than one v=spf1 record is a permerror; merge them into one.
        return f"{text} Publish a single SPF record instead of {len(records)}, for example: " + spf_merge(
            records[0], mechanism
        )
    if "lookups" in lowered and "void" not in lowered:
        return (
            f"{text} It needs more than 10 DNS lookups (RFC 7208 §4.6.4): remove includes you no longer use "
            "or replace some with ip4:/ip6: terms."
        )
    if "void" in lowered:
        return (
            f"{text} More than 2 of its lookups found nothing (RFC 7208 §4.6.4): remove the terms that name "
            "domains without records."
        )
    if records:
        return f"{text} Fix the record `{records[0]}`."
    return text


def _not_authorized_message(domain: str, records: list[str], mechanism: str, failing: list[SpfEvaluation]) -> str:
    which = ", ".join(f"{e.ip} ({e.result})" for e in failing)
    text = f"SPF of {domain} does not authorize {which}."
    if not records:  # a CNAME/redirect target decided; nothing here to edit
        return f"{text} Make sure the record it uses includes {mechanism}."
    merged = spf_merge(records[0], mechanism)
    if merged == records[0]:
        return (
            f"{text} The record already has {mechanism}: make sure it comes before the `all` term and any term "
            "that fails, and that the platform's record lists these addresses."
        )
    return f"{text} Change the TXT record `{records[0]}` to: {merged}"
