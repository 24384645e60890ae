"""Authenticating mail that arrives for an organization: SPF (RFC 7208) for the MAIL FROM and HELO identities,
every DKIM signature (RFC 6376, RSA and Ed25519, RFC 8463), DMARC (RFC 7489 / RFC 9989) with its policy and
alignment, and the ARC chain (RFC 8617), written as one RFC 8601 Authentication-Results header.

pyspf evaluates SPF and dkimpy verifies DKIM and ARC, both through Postwerk's resolver (POSTWERK_DNS_SERVERS);
DMARC policy discovery and alignment are the same code the sender-domain checks use, so what Postwerk tells a
sender and how it judges inbound mail cannot disagree.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

import dkim
import dns.exception
import dns.resolver
import spf

import sending.domains.checks.spf_check  # noqa: F401 - installs pyspf's DNS hook on Postwerk's resolver
from mail import dns as postwerk_dns
from sending.domains.checks.dmarc import (
    DmarcRecord,
    applied_policy,
    dmarc_alignment,
    domain_name,
    lookup_dmarc,
    walked_org_of,
)


@dataclass(frozen=True)
class DkimResult:
    domain: str
    selector: str
    algorithm: str
    result: str  # pass | fail | neutral | temperror | permerror (RFC 8601 §2.7.1)
    reason: str = ""
    b: str = ""  # the first characters of the signature, to tell several apart (RFC 6008)


@dataclass(frozen=True)
class AuthResults:
    spf: str  # for the MAIL FROM identity (or HELO when MAIL FROM is empty): pass | fail | softfail | ...
    spf_domain: str
    helo_spf: str
    helo: str
    dkim: tuple[DkimResult, ...] = ()
    dmarc: str = "none"  # pass | fail | none | temperror | permerror
    dmarc_policy: str = "none"  # the policy that applies to the From domain
    from_domain: str = ""
    arc: str = "none"  # pass | fail | none
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def dmarc_rejects(self) -> bool:
        """The From domain asks receivers to refuse this message (DMARC fails under p=reject)."""
        return self.dmarc == "fail" and self.dmarc_policy == "reject"

    def header(self, authserv_id: str) -> str:
        """The Authentication-Results value (RFC 8601 §2.2), one result per method and signature."""
        parts = [authserv_id]
        mailfrom = f"smtp.mailfrom={self.spf_domain}" if self.spf_domain else f"smtp.helo={self.helo}"
        parts.append(f"spf={self.spf} {mailfrom}")
        if not self.dkim:
            parts.append("dkim=none")
        for sig in self.dkim:
            reason = f" reason={_quoted(sig.reason)}" if sig.reason else ""
            parts.append(
                f"dkim={sig.result}{reason} header.d={sig.domain} header.s={sig.selector} "
                f"header.a={sig.algorithm} header.b={sig.b}"
            )
        if self.from_domain:
            parts.append(f"dmarc={self.dmarc} (p={self.dmarc_policy}) header.from={self.from_domain}")
        else:
            parts.append(f"dmarc={self.dmarc}")
        parts.append(f"arc={self.arc}")
        return ";\r\n\t".join(parts)


def _quoted(text: str) -> str:
    return '"' + re.sub(r'["\\\r\n]', " ", text)[:200] + '"'


def _txt(name: bytes | str, timeout: float = 5) -> bytes | None:
    """dkimpy's DNS function: the TXT record's strings joined, through Postwerk's resolver; None when absent.
    A failed lookup raises dns.exception.DNSException, which dkimpy reports as a temporary error."""
    qname = name.decode() if isinstance(name, bytes) else name
    try:
        answer = postwerk_dns.resolver().resolve(qname, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    return b"".join(next(iter(answer)).strings)


def _spf(ip: str, identity: str, helo: str) -> str:
    try:
        result, _explanation = spf.check2(i=ip, s=identity, h=helo, querytime=20)
    except Exception:  # noqa: BLE001 - pyspf raises for addresses and names it cannot read
        return "permerror"
    return str(result).lower()


def _dkim(raw: bytes) -> tuple[DkimResult, ...]:
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    count = len(headers.get_all("DKIM-Signature") or [])
    results = []
    for index in range(count):
        verifier = dkim.DKIM(raw, minkey=1024)
        try:
            ok = verifier.verify(idx=index, dnsfunc=_txt)
            reason = "" if ok else "signature did not verify"
            result = "pass" if ok else "fail"
        except dns.exception.DNSException as exc:
            result, reason = "temperror", f"key lookup failed: {exc}"
        except dkim.ValidationError as exc:
            # A body changed on the way is a signature that does not verify (fail); anything else dkimpy
            # refuses is a signature that cannot be evaluated (permerror), RFC 8601 §2.7.1.
            changed = str(exc).startswith("body hash mismatch")
            result, reason = ("fail", "body hash did not verify") if changed else ("permerror", str(exc))
        except dkim.DKIMException as exc:
            result, reason = "fail", str(exc)
        fields = verifier.signature_fields or {}
        results.append(
            DkimResult(
                domain=domain_name(fields.get(b"d", b"").decode(errors="replace")),
                selector=fields.get(b"s", b"").decode(errors="replace"),
                algorithm=fields.get(b"a", b"").decode(errors="replace"),
                result=result,
                reason=reason,
                b=re.sub(rb"\s", b"", fields.get(b"b", b""))[:8].decode(errors="replace"),
            )
        )
    return tuple(results)


def _arc(raw: bytes) -> str:
    if b"arc-seal:" not in raw.lower():
        return "none"
    try:
        verdict, _results, _comment = dkim.ARC(raw).verify(dnsfunc=_txt)
    except Exception:  # noqa: BLE001 - a malformed chain is a failed chain
        return "fail"
    return {b"pass": "pass", b"none": "none"}.get(verdict, "fail")


def _from_domain(raw: bytes) -> str | None:
    """The RFC5322.From domain; None when there is not exactly one From address (DMARC cannot apply)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    values = headers.get_all("From") or []
    addresses = email.utils.getaddresses([str(v) for v in values])
    if len(values) != 1 or len(addresses) != 1 or "@" not in addresses[0][1]:
        return None
    return domain_name(addresses[0][1].rpartition("@")[2])


def _exists(domain: str) -> bool:
    """RFC 9091 §2.1: a name is non-existent when it has no A, AAAA or MX records (NXDOMAIN counts too)."""
    for rdtype in ("A", "AAAA", "MX"):
        try:
            postwerk_dns.resolver().resolve(domain, rdtype, search=False)
            return True
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException:
            return True  # unknown is not non-existent: never apply np= on a failed lookup
    return False


def _dmarc(from_domain: str, dkim_results: tuple[DkimResult, ...], spf_result: str, spf_domain: str) -> tuple[str, str]:
    found = lookup_dmarc(from_domain)
    if found.status == "error":
        return "temperror", "none"
    record: DmarcRecord | None = found.record if found.status == "found" else None
    if record is None:
        return "none", "none"
    passing = [sig.domain for sig in dkim_results if sig.result == "pass"]
    spf_passing = spf_domain if spf_result == "pass" and spf_domain else None
    alignment = dmarc_alignment(from_domain, passing, spf_passing, record, org_of=walked_org_of(found))
    exists = True if record.found_at == from_domain or not record.np else _exists(from_domain)
    policy = applied_policy(from_domain, record, domain_exists=exists)
    return ("pass" if alignment.dkim_aligned or alignment.spf_aligned else "fail"), policy


def authenticate(raw: bytes, *, ip: str, helo: str, mail_from: str) -> AuthResults:
    """Every check on one message as it arrived from ``ip`` after ``HELO helo`` and ``MAIL FROM:<mail_from>``."""
    helo = domain_name(helo) if helo else ""
    sender = mail_from.strip("<>")
    helo_spf = _spf(ip, f"postmaster@{helo}", helo) if helo else "none"
    if sender:
        spf_domain = domain_name(sender.rpartition("@")[2])
        spf_result = _spf(ip, sender, helo)
    else:
        # RFC 7208 §2.4: with a null reverse path the HELO identity is the one checked.
        spf_domain, spf_result = helo, helo_spf
    signatures = _dkim(raw)
    from_domain = _from_domain(raw)
    if from_domain is None:
        dmarc_result, policy = "permerror", "none"
    else:
        dmarc_result, policy = _dmarc(from_domain, signatures, spf_result, spf_domain)
    return AuthResults(
        spf=spf_result,
        spf_domain=spf_domain if sender else "",
        helo_spf=helo_spf,
        helo=helo,
        dkim=signatures,
        dmarc=dmarc_result,
        dmarc_policy=policy,
        from_domain=from_domain or "",
        arc=_arc(raw),
    )
