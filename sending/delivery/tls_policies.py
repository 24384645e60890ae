"""Transport security for delivery: each destination's policies, found once and shared, and what every
connection under them concluded (for the attempt's event and for TLS-RPT).

MTA-STS policies live in the database (MtaStsPolicy), so every worker on every host shares one fetch per policy
id; each process keeps its view of a destination for POSTWERK_TLS_POLICY_CACHE_SECONDS, so the lookups cost
nothing per message. DANE lookups are DNS answers, cached by TTL (mail.tls_policy.dnssec)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from datetime import datetime, timedelta

import dns.name
import dns.rdatatype
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from mail.dns import Route
from mail.smtp_client import SmtpSession, TlsResult
from mail.tls_policy import dane, dnssec, records
from mail.tls_policy.decide import DestinationTls
from mail.tls_policy.mta_sts import FetchError, Policy, PolicyError, fetch_policy, record_id
from mail.tls_policy.results import Failure, PolicyType
from sending.models import MtaStsPolicy, TlsSessionCount

log = logging.getLogger(__name__)

_memo: dict[str, tuple[float, int, DestinationTls]] = {}
_lock = threading.Lock()


def clear_caches() -> None:
    with _lock:
        _memo.clear()
    dnssec.clear_caches()
    records.clear_caches()


def destination_tls(domain: str, route: Route) -> DestinationTls:
    """The destination's policies, as this process last saw them (at most POSTWERK_TLS_POLICY_CACHE_SECONDS ago)."""
    now = time.monotonic()
    with _lock:
        hit = _memo.get(domain)
    if hit is not None and hit[0] > now and hit[1] == id(route):
        return hit[2]
    found = _destination_tls(domain, route)
    with _lock:
        _memo[domain] = (now + settings.POSTWERK_TLS_POLICY_CACHE_SECONDS, id(route), found)
    return found


def _destination_tls(domain: str, route: Route) -> DestinationTls:
    tls = DestinationTls(domain)
    if settings.POSTWERK_DANE and route.response is not None and not route.implicit:
        mx = dnssec.validate_response(route.response, dns.name.from_text(domain), dns.rdatatype.MX)
        tls.mx_security, tls.mx_detail = mx.security, mx.detail
        tls.tlsa_lookup = lambda host: dnssec.lookup(dane.tlsa_name(host), "TLSA")
    if settings.POSTWERK_MTA_STS:
        tls.sts, tls.sts_id, tls.sts_problem, tls.sts_waiting_until = sts_policy(domain)
    return tls


# --- MTA-STS: the shared cache -----------------------------------------------------------------------------


def _policy(row: MtaStsPolicy | None) -> Policy | None:
    if row is None or not row.mode:
        return None
    return Policy(mode=row.mode, max_age=row.max_age, mx=tuple(row.mx), text=row.text)


def _waiting_until(row: MtaStsPolicy | None, cached: MtaStsPolicy | None, now: datetime) -> datetime | None:
    """With no cached policy to keep, how long mail waits for a policy that could not be fetched: until
    POSTWERK_MTA_STS_FETCH_GRACE after the first failure (None: no longer, or not failing)."""
    if cached is not None or row is None or row.failing_since is None:
        return None
    until = row.failing_since + timedelta(seconds=settings.POSTWERK_MTA_STS_FETCH_GRACE)
    return until if until > now else None


def sts_policy(domain: str) -> tuple[Policy | None, str, tuple[Failure, str] | None, datetime | None]:
    """The MTA-STS policy in force for `domain`, its id, a problem to report (RFC 8461 §3.3, §5.1), and until
    when mail waits for a policy that could not be fetched.

    The TXT record says whether the cached policy is current; a new id, or a policy past half its max_age, is
    fetched (at most once per POSTWERK_MTA_STS_RETRY after a failure, across every process). When a fetch fails
    the policy fetched before stays in force until it expires: a failure never lowers the protection. With no
    policy fetched before, a domain that publishes the TXT record is not silently treated as having none: its
    mail waits (deferred, the fetch error as the reason, the fetch retried) for POSTWERK_MTA_STS_FETCH_GRACE
    after the first failure, then goes as RFC 8461 §3.3 says (as without a policy, the failure reported)."""
    now = timezone.now()
    row = MtaStsPolicy.objects.filter(domain=domain).first()
    cached = row if row is not None and row.mode and row.expires_at is not None and row.expires_at > now else None
    cached_id = cached.policy_id if cached is not None else ""
    answer = records.txt(f"_mta-sts.{domain}")
    if answer.error or not answer.records:
        # No record (or no answer): a policy fetched before holds until its max_age runs out (RFC 8461 §8.3).
        return _policy(cached), cached_id, None, None
    try:
        txt_id = record_id(answer.records)
    except PolicyError as exc:
        return _policy(cached), cached_id, (Failure.STS_POLICY_INVALID, f"_mta-sts.{domain}: {exc}"), None
    if cached is not None and cached.policy_id == txt_id and cached.fetched_at is not None:
        if now - cached.fetched_at < timedelta(seconds=cached.max_age / 2):
            return _policy(cached), cached_id, None, None
    if (
        row is not None
        and row.failed_at is not None
        and now - row.failed_at < timedelta(seconds=settings.POSTWERK_MTA_STS_RETRY)
    ):
        return _policy(cached), cached_id, (Failure(row.failure), row.error), _waiting_until(row, cached, now)
    try:
        policy = fetch_policy(domain)
    except (FetchError, PolicyError) as exc:
        failure = (
            Failure.STS_POLICY_INVALID
            if isinstance(exc, PolicyError)
            else (Failure.STS_WEBPKI_INVALID if exc.webpki else Failure.STS_POLICY_FETCH_ERROR)
        )
        text = f"MTA-STS policy of {domain} could not be fetched: {exc}"[:1000]
        log.warning("%s", text)
        since = row.failing_since if row is not None and row.failing_since is not None else now
        row, _ = MtaStsPolicy.objects.update_or_create(
            domain=domain, defaults={"failed_at": now, "failing_since": since, "failure": str(failure), "error": text}
        )
        return _policy(cached), cached_id, (failure, text), _waiting_until(row, cached, now)
    MtaStsPolicy.objects.update_or_create(
        domain=domain,
        defaults={
            "policy_id": txt_id,
            "mode": policy.mode,
            "mx": list(policy.mx),
            "max_age": policy.max_age,
            "text": policy.text,
            "fetched_at": now,
            "expires_at": now + timedelta(seconds=policy.max_age),
            "failed_at": None,
            "failing_since": None,
            "failure": "",
            "error": "",
        },
    )
    return policy, txt_id, None, None


# --- what a connection concluded -----------------------------------------------------------------------------


def session_details(session: SmtpSession, tls: DestinationTls | None) -> dict | None:
    """The `tls_policy` of a delivery attempt's event: which policy applied and what it concluded."""
    if tls is None:
        return None
    details: dict[str, object] = {
        "policy": str(session.tls_policy),
        "result": "failure" if session.tls_failure else "success",
    }
    if session.tls_failure:
        details.update(failure=session.tls_failure, detail=session.tls_detail)
    _add_policy_facts(details, session.tls_policy, tls)
    return details


def refusal_details(results: list[TlsResult], tls: DestinationTls | None) -> dict | None:
    """The `tls_policy` of an attempt no host could take: the last refusal by a policy, if that is why."""
    refused = [r for r in results if r.failure is not None]
    if tls is None or not refused:
        return None
    last = refused[-1]
    details: dict[str, object] = {
        "policy": str(last.policy),
        "result": "failure",
        "failure": str(last.failure),
        "detail": last.detail,
    }
    _add_policy_facts(details, last.policy, tls)
    return details


def _add_policy_facts(details: dict[str, object], policy: PolicyType, tls: DestinationTls) -> None:
    if policy in (PolicyType.MTA_STS_ENFORCE, PolicyType.MTA_STS_TESTING):
        details["policy_id"] = tls.sts_id
    if tls.sts_problem is not None:
        details["sts_problem"] = {"failure": str(tls.sts_problem[0]), "detail": tls.sts_problem[1]}


def refusal_text(text: str, tls: DestinationTls | None) -> str:
    """A deferral's reply text, with the policy fetch problem that kept the cached policy in force, if any."""
    if tls is None or tls.sts_problem is None or tls.sts is None:
        return text
    return f"{text} (the cached MTA-STS policy id {tls.sts_id} applies: {tls.sts_problem[1]})"


# --- TLS-RPT counts ------------------------------------------------------------------------------------------


def _report_policy(domain: str, result: TlsResult, tls: DestinationTls) -> tuple[str, dict]:
    policy = result.policy
    if policy is PolicyType.DANE:
        answer = tls.tlsa_lookup(result.host) if tls.tlsa_lookup is not None else None
        rrset = answer.rrset if answer is not None and answer.rrset is not None else []
        strings = sorted(str(t) for t in dane.from_rrset(rrset))
        return "tlsa", {"policy-string": strings, "mx-host": [result.host]}
    if policy in (PolicyType.MTA_STS_ENFORCE, PolicyType.MTA_STS_TESTING) and tls.sts is not None:
        return "sts", {"policy-string": tls.sts.lines, "mx-host": list(tls.sts.mx)}
    if tls.sts_problem is not None:
        return "sts", {"policy-string": [], "mx-host": []}
    return "no-policy-found", {}


def sessions_record(domain: str, results: list[TlsResult], tls: DestinationTls | None) -> None:
    """Count each judged connection for the domain's TLS-RPT report (one upsert per connection, not per message)."""
    if not settings.POSTWERK_TLSRPT or tls is None or not results:
        return
    day = timezone.now().date()
    for result in results:
        policy_type, policy = _report_policy(domain, result, tls)
        failure = str(result.failure or "")
        detail = result.detail
        if not failure and tls.sts_problem is not None and policy_type == "sts" and tls.sts is None:
            failure, detail = str(tls.sts_problem[0]), tls.sts_problem[1]
        key = hashlib.sha256(json.dumps([policy_type, policy], sort_keys=True).encode()).hexdigest()[:32]
        match = {
            "day": day,
            "domain": domain,
            "policy_key": key,
            "result": failure,
            "mx_host": result.host,
            "sending_ip": result.local_address,
            "receiving_ip": result.address,
        }
        if TlsSessionCount.objects.filter(**match).update(count=F("count") + 1):
            continue
        try:
            with transaction.atomic():
                TlsSessionCount.objects.create(
                    **match, policy_type=policy_type, policy=policy, detail=detail[:300], count=1
                )
        except IntegrityError:  # another worker created it meanwhile
            TlsSessionCount.objects.filter(**match).update(count=F("count") + 1)
