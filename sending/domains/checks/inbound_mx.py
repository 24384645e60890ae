"""The inbound host's MX records: every exchange must be one of the platform's inbound MX hosts.

An MX to a host of the owner's beside ours would split the mail between two places (RFC 5321 §5.1: senders pick
among equal preferences at random), so a foreign exchange is reported as wrong, not as a partial success.
"""

from __future__ import annotations

from sending.domains.checks.spec import CheckResult, CheckStatus, DomainSpec, ExpectedRecord, error_result
from sending.domains.checks.txt import lookup, normalize

NAME = "inbound_mx"


def inbound_mx_records(spec: DomainSpec) -> list[ExpectedRecord]:
    """One MX record per platform MX host, preference 10 apart in the configured order."""
    if not spec.inbound_host:
        return []
    return [
        ExpectedRecord(
            "inbound",
            "MX",
            spec.inbound_host,
            f"{(i + 1) * 10} {normalize(host)}.",
            "Inbound mail for this name comes to Postwerk and follows your inbound routes. Remove other MX records "
            "at this name.",
        )
        for i, host in enumerate(spec.platform_mx_hosts)
    ]


def check_inbound_mx(spec: DomainSpec) -> CheckResult | None:
    if not spec.inbound_host:
        return None
    host = normalize(spec.inbound_host)
    ours = sorted({normalize(h) for h in spec.platform_mx_hosts})
    details = {"host": host, "platform_mx_hosts": ours}
    wanted = ", ".join(ours)
    found = lookup(host, "MX")
    if found.failed:
        return error_result(NAME, f"Could not check the MX records of {host}: {found.detail}.", **details)
    if not found.found:
        return CheckResult(NAME, CheckStatus.MISSING, f"{host} has no MX record. Add MX records to {wanted}.", details)
    details["mx"] = found.records
    foreign = [exchange for exchange in found.records if exchange not in ours]
    if foreign:
        return CheckResult(
            NAME,
            CheckStatus.WRONG,
            f"{host} has MX records to {', '.join(foreign)}, so some inbound mail would not reach Postwerk. "
            f"Replace them with MX records to {wanted}.",
            details,
        )
    return CheckResult(NAME, CheckStatus.OK, f"{host} has MX records to {', '.join(found.records)}.", details)
