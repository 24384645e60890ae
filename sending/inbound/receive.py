"""Accepting mail for inbound domains: the route decided at RCPT, then at the end of DATA the authentication
checks, the raw message with our Authentication-Results header committed with one row per routed recipient,
and a post route's delivery queued after that commit.

No open relay: an address at an inbound domain that no route takes, or that a `refuse` route takes, is refused
at RCPT with 550 5.1.1, never accepted and bounced later. Addresses at other hosts are left to the bounce and
feedback check (sending.feedback.inbound_intake).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sending.domains.message_authentication import AuthResults, authenticate
from sending.errors import Refused
from sending.feedback.inbound_intake import inbound_store
from sending.inbound.matching import RouteRef, route_for
from sending.inbound.parse import parsed_fields, without_nul
from sending.inbound.payload import inbound_payload
from sending.inbound.spam import NOT_CONFIGURED, not_checked, spam_headers
from sending.models import Domain, InboundMail, InboundRoute, WebhookDelivery
from sending.webhooks.dispatch import enqueue

log = logging.getLogger(__name__)

NO_SUCH_USER = "550 5.1.1 No such recipient here"
DMARC_REFUSED = "550 5.7.1 Refused: the From domain's DMARC policy is p=reject and this message fails DMARC"
SPAM_REFUSED = "550 5.7.1 Refused: this message is spam"
Action, DmarcReject = InboundRoute.Action, InboundRoute.DmarcReject


def inbound_domain(host: str) -> Domain | None:
    """The inbound-enabled, owner-verified Domain whose inbound host is `host`."""
    host = host.lower().rstrip(".")
    label, _, parent = host.partition(".")
    for domain in Domain.objects.filter(name__in=[host, parent], inbound_enabled=True).exclude(
        ownership_verified_at=None
    ):
        if domain.inbound_host == host:
            return domain
    return None


def route_of(domain: Domain, local: str) -> InboundRoute | None:
    routes = list(InboundRoute.objects.filter(domain=domain))
    refs = [RouteRef(r.pk, r.kind, r.match.rpartition("@")[0], r.match) for r in routes]
    found = route_for(local, refs)
    return next((r for r in routes if r.pk == found.id), None) if found is not None else None


def route_check(address: str) -> str | None:
    """RCPT at the inbound MX: the id of the route that takes `address`, None when its host is no inbound domain
    (the bounce and feedback check decides then), or Refused 550 5.1.1."""
    local, at, host = address.strip().strip("<>").rpartition("@")
    if not at or not local or not host:
        return None
    domain = inbound_domain(host)
    if domain is None:
        return None
    route = route_of(domain, local)
    if route is None or route.action == Action.REFUSE:
        raise Refused.smtp(NO_SUCH_USER)
    return str(route.pk)


# Spam verdict headers as a spam checker writes them: a sender's own copies would pass for ours.
SPAM_HEADERS = {b"x-spam-status", b"x-spam-score", b"x-spam-flag", b"x-spam-level", b"x-spam-tests"}


def without_our_results(raw: bytes, authserv_id: str, *, spam_checked: bool = False) -> bytes:
    """The message without Authentication-Results headers that claim our authserv-id: RFC 8601 §5 says a
    receiver removes them, as only we may write them and a sender could forge them. With `spam_checked`, also
    without the X-Spam-* verdict headers it came with, as ours replace them."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return raw
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name, colon, value = line.partition(b":")
        name = name.strip().lower()
        dropping = bool(colon) and (
            (
                name == b"authentication-results"
                and value.strip().split(b";", 1)[0].strip().lower() == authserv_id.lower().encode()
            )
            or (spam_checked and name in SPAM_HEADERS)
        )
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + sep + body


def _auth(raw: bytes, *, peer_ip: str | None, helo: str, mail_from: str) -> tuple[AuthResults | None, dict]:
    """The checks and their JSON (with the header as added); no results when the checks themselves broke."""
    if not peer_ip:
        return None, {}
    try:
        results = authenticate(raw, ip=peer_ip, helo=helo, mail_from=mail_from)
    except Exception:  # a verifier bug must not refuse or lose the mail: kept without results
        log.exception("authenticating an inbound message failed")
        return None, {}
    return results, without_nul(
        {  # type: ignore[return-value]
            "header": results.header(settings.POSTWERK_HOSTNAME),
            "spf": results.spf,
            "spf_domain": results.spf_domain,
            "helo_spf": results.helo_spf,
            "dkim": [
                {"domain": d.domain, "selector": d.selector, "algorithm": d.algorithm, "result": d.result}
                for d in results.dkim
            ],
            "dmarc": results.dmarc,
            "dmarc_policy": results.dmarc_policy,
            "from_domain": results.from_domain,
            "arc": results.arc,
        }
    )


def _decide(route: InboundRoute, results: AuthResults | None, spam: dict) -> tuple[str, str]:
    """(state, note) for the mail of one route."""
    if results is not None and results.dmarc_rejects and route.dmarc_reject != DmarcReject.ACCEPT:
        return InboundMail.State.HELD, "held: fails DMARC under p=reject"
    if spam.get("is_spam") and route.spam != DmarcReject.ACCEPT:
        return InboundMail.State.HELD, f"held: spam (score {spam['score']:.1f})"
    if route.action == Action.HOLD:
        return InboundMail.State.HELD, ""
    return InboundMail.State.STORED, ""


def inbound_receive(
    *,
    peer_ip: str | None,
    helo: str,
    mail_from: str,
    feedback_rcpts: list[str],
    routed: dict[str, str],
    raw: bytes,
    spam: dict | None = None,
) -> str:
    """Store one message for its recipients; returns the queue id for the 250. Refused (550 5.7.1) when every
    recipient is routed and every route refuses mail that fails DMARC under p=reject. `spam` is the spam check's
    result (sending.inbound.spam), awaited by the SMTP session before this; None: not checked."""
    routes = {str(r.pk): r for r in InboundRoute.objects.filter(pk__in=set(routed.values())).select_related("endpoint")}
    results, auth = _auth(raw, peer_ip=peer_ip, helo=helo, mail_from=mail_from) if routed else (None, {})
    spam = spam if spam is not None else not_checked(NOT_CONFIGURED)
    # Refused at the end of DATA only when every recipient's route refuses it; otherwise such mail is held.
    everyone = [routes[r] for r in routed.values() if r in routes] if routed and not feedback_rcpts else []
    if everyone and results is not None and results.dmarc_rejects:
        if all(route.dmarc_reject == DmarcReject.REFUSE for route in everyone):
            raise Refused.smtp(DMARC_REFUSED)
    if everyone and spam.get("is_spam") and all(route.spam == DmarcReject.REFUSE for route in everyone):
        raise Refused.smtp(SPAM_REFUSED)
    raw = spam_headers(spam) + without_our_results(raw, settings.POSTWERK_HOSTNAME, spam_checked=spam["checked"])
    if auth:
        raw = b"Authentication-Results: " + auth["header"].encode() + b"\r\n" + raw
    queue_ids: list[str] = []
    with transaction.atomic():
        if feedback_rcpts:
            report = inbound_store(peer_ip=peer_ip, mail_from=mail_from, rcpt_tos=feedback_rcpts, raw=raw)
            queue_ids.append(str(report.pk))
        for address, route_id in routed.items():
            route = routes.get(route_id)
            if route is None:  # deleted between RCPT and DATA: the 451 makes the sender ask again
                raise Refused.smtp("451 4.3.0 The route for this address changed; try again")
            mail = _mail_store(
                route, address, raw, auth, results, spam=spam, peer_ip=peer_ip, helo=helo, mail_from=mail_from
            )
            queue_ids.append(str(mail.pk))
    return queue_ids[0] if queue_ids else ""


def _mail_store(
    route: InboundRoute,
    address: str,
    raw: bytes,
    auth: dict,
    results: AuthResults | None,
    *,
    spam: dict,
    peer_ip: str | None,
    helo: str,
    mail_from: str,
) -> InboundMail:
    state, note = _decide(route, results, spam)
    try:
        parsed, found = parsed_fields(raw, original_recipient=address)
    except Exception:  # kept raw all the same: nothing accepted is lost
        log.exception("an inbound message could not be parsed")
        parsed, found, note = {}, [], "the message could not be parsed; the raw message is kept"
    mail = InboundMail.objects.create(
        organization_id=route.organization_id,
        route=route,
        action=route.action,
        state=state,
        peer_ip=peer_ip or "",
        helo=str(without_nul(helo))[:255],
        mail_from=str(without_nul(mail_from))[:320],
        rcpt_to=str(without_nul(address))[:320],
        from_address=str(parsed.get("From", ""))[:320],
        subject=str(parsed.get("Subject", ""))[:998],
        message_id=next((h["Value"] for h in parsed.get("Headers", []) if h["Name"].lower() == "message-id"), "")[:998],
        size=len(raw),
        raw=raw,
        parsed=parsed,
        auth=auth,
        spam=spam,
        note=note,
    )
    if route.action == Action.POST and state == InboundMail.State.STORED:
        inbound_post_queue(mail, found)
    return mail


def inbound_post_queue(mail: InboundMail, found: list | None = None, *, replay: bool = False) -> WebhookDelivery | None:
    """A delivery of the mail's post to its route's endpoint, sent after commit by the webhook workers (their
    signature, retry schedule and attempt log). None when the route has no enabled endpoint."""
    route = mail.route
    endpoint = route.endpoint if route is not None else None
    if endpoint is None or not endpoint.enabled:
        return None
    if found is None:
        from sending.inbound.parse import attachments, message_read

        found = attachments(message_read(bytes(mail.raw)))
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        organization_id=mail.organization_id,
        inbound_mail=mail,
        payload=inbound_payload(mail, found),
        state=WebhookDelivery.State.QUEUED,
        trigger=WebhookDelivery.Trigger.REPLAY if replay else WebhookDelivery.Trigger.AUTO,
        # The sweep leaves it alone while its task is on the way; sent again after this if that task is lost.
        next_attempt_at=timezone.now() + timedelta(seconds=settings.POSTWERK_ENQUEUE_LEASE),
    )
    refs = [(str(delivery.pk), str(endpoint.pk))]
    transaction.on_commit(lambda: enqueue(refs))
    return delivery
