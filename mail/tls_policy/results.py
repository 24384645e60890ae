"""The vocabulary every policy speaks: TLS-RPT's result types (RFC 8460 §4.3) and the policy labels recorded on
each delivery attempt."""

from __future__ import annotations

from enum import StrEnum


class PolicyType(StrEnum):
    """What governed a connection, as recorded on the attempt (and mapped onto TLS-RPT's policy-type)."""

    OPPORTUNISTIC = "opportunistic"  # no policy: STARTTLS when offered, any certificate, plain text otherwise
    MTA_STS_TESTING = "mta-sts-testing"  # RFC 8461 §5: deliver as opportunistic, report what enforce would do
    MTA_STS_ENFORCE = "mta-sts-enforce"
    DANE = "dane"  # RFC 7672: DNSSEC-validated TLSA records of the MX host

    @property
    def report_type(self) -> str:
        """RFC 8460 §4.4's policy-type."""
        if self is PolicyType.DANE:
            return "tlsa"
        if self in (PolicyType.MTA_STS_TESTING, PolicyType.MTA_STS_ENFORCE):
            return "sts"
        return "no-policy-found"


class Failure(StrEnum):
    """RFC 8460 §4.3 result types."""

    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    TLSA_INVALID = "tlsa-invalid"
    DNSSEC_INVALID = "dnssec-invalid"
    DANE_REQUIRED = "dane-required"
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"


def certificate_failure(verification: str) -> Failure:
    """The result type of a `failed: <why>` from mail.tls_verify."""
    text = verification.lower()
    if "not valid at" in text or "expired" in text:
        return Failure.CERTIFICATE_EXPIRED
    if "subjectaltname" in text or "name mismatch" in text or "hostname" in text:
        return Failure.CERTIFICATE_HOST_MISMATCH
    return Failure.CERTIFICATE_NOT_TRUSTED
