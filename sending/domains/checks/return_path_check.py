"""The return-path host: a CNAME to the platform's return-path host, or MX records to its inbound MX hosts."""

from __future__ import annotations

from typing import Any

from sending.domains.checks.spec import CheckResult, CheckStatus, DomainSpec, error_result
from sending.domains.checks.txt import lookup, normalize

# Owners sometimes CNAME through a name of their own; follow a few hops, not a loop.
MAX_CNAME_HOPS = 5


def check_return_path(spec: DomainSpec) -> CheckResult:
    host = normalize(spec.return_path_host)
    target = normalize(spec.platform_return_path_target)
    our_mx = sorted({normalize(h) for h in spec.platform_mx_hosts})
    details: dict[str, Any] = {"host": host, "expected_cname": target, "platform_mx_hosts": our_mx}
    add_cname = f"Add a CNAME record at {host} pointing to {target}."

    cname = lookup(host, "CNAME")
    if cname.failed:
        return error_result("return_path", f"Could not check the return path {host}: {cname.detail}.", **details)
    if cname.found:
        chain = [cname.records[0]]
        while chain[-1] != target and len(chain) < MAX_CNAME_HOPS:
            hop = lookup(chain[-1], "CNAME")
            if hop.failed:
                return error_result(
                    "return_path", f"Could not check the return path {host}: {hop.detail}.", **details, cname=chain
                )
            if not hop.found:
                break
            chain.append(hop.records[0])
        details["cname"] = chain
        details["method"] = "cname"
        if target in chain:
            return CheckResult("return_path", CheckStatus.OK, f"{host} is a CNAME to {target}.", details)
        return CheckResult(
            "return_path",
            CheckStatus.WRONG,
            f"{host} is a CNAME to {chain[0]}, not to {target}. Change the CNAME target to {target}.",
            details,
        )

    # The alternative for names that cannot be a CNAME: MX to our inbound hosts (and an SPF TXT record,
    # which the return-path SPF check looks at).
    mx = lookup(host, "MX")
    if mx.failed:
        return error_result("return_path", f"Could not check the return path {host}: {mx.detail}.", **details)
    if mx.found:
        details["mx"] = mx.records
        details["method"] = "mx"
        foreign = [exchange for exchange in mx.records if exchange not in our_mx]
        if not foreign:
            return CheckResult(
                "return_path", CheckStatus.OK, f"{host} has MX records to {', '.join(mx.records)}.", details
            )
        return CheckResult(
            "return_path",
            CheckStatus.WRONG,
            f"{host} has MX records to {', '.join(foreign)}, so bounces would not reach us. Replace them with MX "
            f"records to {', '.join(our_mx)}, or remove them and {add_cname[0].lower()}{add_cname[1:]}",
            details,
        )
    return CheckResult("return_path", CheckStatus.MISSING, f"{host} is not set up. {add_cname}", details)
