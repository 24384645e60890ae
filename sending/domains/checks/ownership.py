"""Domain ownership: our verification token among the domain's TXT records."""

from __future__ import annotations

from sending.domains.checks.records import VERIFICATION_PREFIX, verification_value
from sending.domains.checks.spec import CheckResult, CheckStatus, DomainSpec, error_result
from sending.domains.checks.txt import lookup_txt


def check_ownership(spec: DomainSpec) -> CheckResult:
    expected = verification_value(spec.verification_token)
    details = {"record_name": spec.name, "expected": expected}
    found = lookup_txt(spec.name)
    if found.failed:
        return error_result("ownership", f"Could not check ownership of {spec.name}: {found.detail}.", **details)
    texts = [text.strip() for text in found.records]
    if expected in texts:
        return CheckResult("ownership", CheckStatus.OK, f"{spec.name} publishes its verification token.", details)
    others = [text for text in texts if text.lower().startswith(VERIFICATION_PREFIX)]
    if others:
        details["found"] = others
        return CheckResult(
            "ownership",
            CheckStatus.WRONG,
            f"{spec.name} has a different token ({others[0]}). Change that TXT record to: {expected}",
            details,
        )
    return CheckResult(
        "ownership",
        CheckStatus.MISSING,
        f"Add a TXT record at {spec.name} with the value: {expected}",
        details,
    )
