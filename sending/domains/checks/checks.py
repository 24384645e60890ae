"""Every check of a sender domain, in one call."""

from __future__ import annotations

from sending.domains.checks.dkim_record import check_dkim
from sending.domains.checks.dmarc import check_dmarc, check_dmarc_report
from sending.domains.checks.inbound_mx import check_inbound_mx
from sending.domains.checks.ownership import check_ownership
from sending.domains.checks.return_path_check import check_return_path
from sending.domains.checks.spec import CheckResult, CheckStatus, DomainSpec
from sending.domains.checks.spf_check import check_spf, check_spf_return_path

__all__ = [
    "check_dkim",
    "check_dmarc",
    "check_dmarc_report",
    "check_ownership",
    "check_return_path",
    "check_spf",
    "run_checks",
]


def run_checks(spec: DomainSpec) -> list[CheckResult]:
    """ownership, dkim (one per key), spf (From domain), return_path, spf (return path), dmarc, and dmarc_report
    when the report address needs an authorisation record (RFC 7489 §7.1), and inbound_mx when inbound mail is
    enabled — in that order.

    DMARC alignment uses the DKIM and return-path SPF outcomes of this run; a check that could not run
    (status error) counts as passing there, so one timeout never makes DMARC look broken.
    """
    results = [check_ownership(spec)]
    dkim = [check_dkim(spec, key) for key in spec.dkim_keys]
    results += dkim
    results.append(check_spf(spec, "from"))
    results.append(check_return_path(spec))
    return_path_spf = check_spf_return_path(spec)
    results.append(return_path_spf)
    passing = (CheckStatus.OK, CheckStatus.ERROR)
    results.append(
        check_dmarc(
            spec,
            dkim_ok=any(r.status in passing for r in dkim),
            return_path_spf_ok=return_path_spf.status in passing,
        )
    )
    for optional in (check_dmarc_report(spec), check_inbound_mx(spec)):
        if optional is not None:
            results.append(optional)
    return results
