"""Inputs and outputs of the domain checks: a domain's specification, expected records, check results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

DkimAlgorithm = Literal["rsa", "ed25519"]


@dataclass(frozen=True)
class DkimKeySpec:
    selector: str
    algorithm: DkimAlgorithm  # "rsa" (RFC 6376) or "ed25519" (RFC 8463)
    # The p= value: base64 SubjectPublicKeyInfo DER for RSA, the raw 32-byte key for Ed25519 (RFC 8463 §4.2).
    public_key_b64: str

    def record_name(self, domain: str) -> str:
        # RFC 6376 §3.6.2.1: keys live at SELECTOR._domainkey.DOMAIN.
        return f"{self.selector}._domainkey.{domain}"


@dataclass(frozen=True)
class DomainSpec:
    name: str  # the From domain, e.g. "acme.example"
    verification_token: str
    dkim_keys: Sequence[DkimKeySpec]
    return_path_host: str  # e.g. "pm-bounces.acme.example"
    platform_return_path_target: str  # the CNAME target, e.g. "rp.postwerk.example"
    platform_mx_hosts: Sequence[str]  # inbound MX hosts, for the MX + SPF alternative
    spf_include: str | None  # e.g. "_spf.postwerk.example"; None: use sending_ips as ip4:/ip6: terms
    sending_ips: Sequence[str]  # the addresses delivery connects from
    dmarc_rua: str  # reporting address, with or without "mailto:"
    inbound_host: str | None = None  # the name inbound mail is addressed to, when inbound mail is enabled


class CheckStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"  # nothing published (NXDOMAIN / no such record)
    WRONG = "wrong"  # something published, but not what it must be
    ERROR = "error"  # DNS did not answer (timeout, SERVFAIL): temporary, says nothing about the record


@dataclass(frozen=True)
class CheckResult:
    name: str  # "ownership", "dkim", "spf", "dmarc", "dmarc_report", "return_path"
    status: CheckStatus
    message: str  # for a person: what is wrong and exactly what to change
    details: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable facts

    @property
    def ok(self) -> bool:
        return self.status is CheckStatus.OK

    @property
    def key(self) -> str:
        """Unique within one run: "dkim:<selector>", "spf:from", "spf:return_path", else the name."""
        if self.name == "dkim":
            return f"dkim:{self.details.get('selector', '')}"
        if self.name == "spf":
            return f"spf:{self.details.get('scope', 'from')}"
        return self.name


@dataclass(frozen=True)
class ExpectedRecord:
    purpose: str  # "ownership", "dkim", "return_path", "spf", "dmarc", "dmarc_report", "inbound"
    type: str  # DNS record type: "TXT", "CNAME", "MX"
    name: str  # owner name, fully qualified without the trailing dot
    value: str  # presentation value to publish (TXT values unquoted)
    note: str = ""
    publisher: str = "owner"  # who publishes it: "owner" (the domain's owner) or "operator" (the platform's)


def error_result(name: str, message: str, **details: Any) -> CheckResult:
    """A temporary DNS failure: never reported as missing or wrong, so one timeout flips nothing."""
    return CheckResult(name, CheckStatus.ERROR, message, {**details, "temporary": True})
