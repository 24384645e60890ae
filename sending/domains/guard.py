"""The send-time guard on a sender domain: refuse mail receivers would treat as spoofed, before it is queued.

Reads only what the last DNS checks stored on the Domain row, so it costs no lookup on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from django.conf import settings

from sending.domains.checks.dmarc import DmarcRecord, DmarcRecordError, dmarc_alignment, parse_dmarc
from sending.models import DkimKey, Domain


@dataclass(frozen=True)
class Refusal:
    code: str  # "domain_unverified" | "dmarc_alignment"
    message: str


def domain_refusal(domain: Domain, from_domain: str) -> Refusal | None:
    """Why mail From `from_domain` (this domain or, when allowed, a subdomain) may not be sent, or None."""
    if settings.POSTWERK_REQUIRE_VERIFIED_DOMAINS and domain.verified_at is None:
        return Refusal("domain_unverified", _unverified_message(domain))
    policy = _dmarc_record(domain)
    if policy is None:
        return None
    alignment = dmarc_alignment(
        from_domain,
        [domain.name] if domain.dkim_ok else [],
        domain.return_path_host if domain.return_path_ok and domain.spf_ok else None,
        policy,
    )
    if not alignment.would_be_rejected:
        return None
    return Refusal(
        "dmarc_alignment",
        f"{from_domain} publishes DMARC p={alignment.policy} (at _dmarc.{policy.found_at}) and neither DKIM "
        f"(d={domain.name}, adkim={policy.adkim}) nor SPF (return path {domain.return_path_host}, "
        f"aspf={policy.aspf}) would align, so receivers would reject this message. Fix the records the domain's "
        "checks name, then verify the domain again.",
    )


def _dmarc_record(domain: Domain) -> DmarcRecord | None:
    text = (domain.dmarc or {}).get("text")
    if not text:
        return None
    record = _parsed_dmarc(text)
    if record is None:
        return None  # receivers ignore a malformed record, and so do we
    return replace(record, found_at=domain.dmarc.get("found_at", domain.name))


@lru_cache(maxsize=1024)
def _parsed_dmarc(text: str) -> DmarcRecord | None:
    """Parsed once per record text: every submitted message asks."""
    try:
        return parse_dmarc(text)
    except DmarcRecordError:
        return None


def _unverified_message(domain: Domain) -> str:
    missing = []
    if domain.ownership_verified_at is None:
        missing.append(f'TXT {domain.name} "postwerk-verification={domain.verification_token}"')
    if not domain.dkim_keys.filter(state=DkimKey.State.ACTIVE, algorithm=DkimKey.Algorithm.RSA).exists():
        key = domain.dkim_keys.filter(algorithm=DkimKey.Algorithm.RSA).order_by("-created_at").first()
        missing.append(f"TXT {key.record_name} (the DKIM key)" if key else "a DKIM key")
    return (
        f"{domain.name} is not verified: publish {' and '.join(missing) or 'its records'}, "
        "then verify the domain (POST /api/v1/domains/{id}/verify)."
    ).replace("{id}", str(domain.pk))
