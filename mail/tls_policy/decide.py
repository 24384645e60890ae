"""Which policy governs a connection to one MX host, and whether a TLS session satisfied it.

A destination's policies (its MTA-STS policy, whether its MX answer was DNSSEC-validated, each host's TLSA
answer) come in from outside; this module only decides, per host, in RFC order: DANE where the host has
validated TLSA records (RFC 7672; it takes precedence over MTA-STS, RFC 8461 §2), else the domain's MTA-STS
policy, else opportunistic TLS. An enforcing policy (DANE, MTA-STS enforce) never lets mail go in plain text or
to a host it does not name: the host is skipped with a reason, and when no host is left the mail waits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mail.tls_policy import dane
from mail.tls_policy.dnssec import Answer, Security
from mail.tls_policy.mta_sts import Policy
from mail.tls_policy.results import Failure, PolicyType, certificate_failure
from mail.tls_verify import VERIFIED


class TlsSession(Protocol):
    mx_host: str
    tls: bool
    tls_verification: str
    peer_certs: list[bytes]


@dataclass
class HostCheck:
    """What one MX host must satisfy. `refused`: the host may not be used at all (said before connecting)."""

    host: str
    policy: PolicyType
    refused: Failure | None = None
    detail: str = ""
    tlsa: list[dane.Tlsa] = field(default_factory=list)

    @property
    def require_tls(self) -> bool:
        return self.policy in (PolicyType.DANE, PolicyType.MTA_STS_ENFORCE)

    def judge(self, session: TlsSession) -> tuple[Failure | None, str]:
        """Did the session meet the policy? (None, "") or the result type and why. Opportunistic never fails."""
        if self.policy is PolicyType.OPPORTUNISTIC:
            return None, ""
        if not session.tls:
            return Failure.STARTTLS_NOT_SUPPORTED, f"{self.host} does not offer STARTTLS"
        if self.policy is PolicyType.DANE:
            if not any(r.usable for r in self.tlsa):
                return None, ""  # RFC 7672 §2.2: only unusable records: TLS is mandatory, authentication is not
            why = dane.verify(session.peer_certs, self.tlsa, [self.host])
            return (None, "") if why is None else (Failure.VALIDATION_FAILURE, f"DANE: {why}")
        if session.tls_verification != VERIFIED:
            failure = certificate_failure(session.tls_verification)
            return failure, f"certificate of {self.host} not valid: {session.tls_verification.removeprefix('failed: ')}"
        return None, ""


@dataclass
class DestinationTls:
    """One destination's policies, as found; `check(host)` decides per host (TLSA looked up on demand)."""

    domain: str
    sts: Policy | None = None
    sts_id: str = ""
    # The MTA-STS policy could not be (re)fetched or parsed: what to report (and, with no cached policy, all
    # that is left of it: the domain is treated as having none, RFC 8461 §3.3).
    sts_problem: tuple[Failure, str] | None = None
    # With no cached policy: mail waits for the policy until this time (POSTWERK_MTA_STS_FETCH_GRACE), rather
    # than go at once as if the domain published none. None: not waiting.
    sts_waiting_until: datetime | None = None
    mx_security: Security = Security.INSECURE
    mx_detail: str = ""
    tlsa_lookup: Callable[[str], Answer] | None = None  # host -> validated TLSA answer; None: DANE off

    def check(self, host: str) -> HostCheck:
        if self.mx_security is Security.BOGUS:
            return HostCheck(host, PolicyType.DANE, Failure.DNSSEC_INVALID, f"MX of {self.domain}: {self.mx_detail}")
        if self.mx_security is Security.SECURE and self.tlsa_lookup is not None:
            answer = self.tlsa_lookup(host)
            if answer.security is Security.BOGUS:
                return HostCheck(host, PolicyType.DANE, Failure.DNSSEC_INVALID, f"TLSA of {host}: {answer.detail}")
            if answer.security is Security.ERROR:
                # RFC 7672 §2.2: a TLSA lookup that fails (not "no records") makes the host unusable.
                return HostCheck(host, PolicyType.DANE, Failure.TLSA_INVALID, f"TLSA of {host}: {answer.detail}")
            if answer.security is Security.SECURE and answer.rrset is not None:
                return HostCheck(host, PolicyType.DANE, tlsa=dane.from_rrset(answer.rrset))
        if self.sts is None and self.sts_problem is not None and self.sts_waiting_until is not None:
            return HostCheck(
                host,
                PolicyType.MTA_STS_ENFORCE,
                self.sts_problem[0],
                f"{self.sts_problem[1]}; waiting for the policy until {self.sts_waiting_until:%Y-%m-%d %H:%M} UTC"
                " at most, then delivering as if the domain published none (RFC 8461 §3.3)",
            )
        if self.sts is not None and self.sts.mode in ("enforce", "testing"):
            policy = PolicyType.MTA_STS_ENFORCE if self.sts.mode == "enforce" else PolicyType.MTA_STS_TESTING
            if not self.sts.matches(host):
                return HostCheck(
                    host,
                    policy,
                    Failure.VALIDATION_FAILURE,
                    f"{host} is not an MX host the MTA-STS policy of {self.domain} names ({', '.join(self.sts.mx)})",
                )
            return HostCheck(host, policy)
        return HostCheck(host, PolicyType.OPPORTUNISTIC)
