"""Inbound mail handled by hand: posting it again, and releasing held mail (held by a `hold` route, or for failing
DMARC under p=reject): the mail of a route that posts is posted now; any other becomes stored. A release is
audited as `inbound.released`."""

from __future__ import annotations

from django.db import transaction

from accounts.audit import audit_record
from mail.errors import PostwerkError
from sending.inbound.receive import inbound_post_queue
from sending.models import InboundMail, InboundRoute, WebhookDelivery

Action = InboundRoute.Action


class RetryRefused(PostwerkError):
    """The API's 409: the action does not apply to the mail as it is."""


@transaction.atomic
def inbound_post_retry(*, mail: InboundMail) -> WebhookDelivery:
    """Post the mail again now, to its route's endpoint as it is today, as a `replay` delivery with fresh links
    (held mail of a post route is released so)."""
    route = mail.route
    if route is None or route.action != Action.POST:
        raise RetryRefused("The message's route no longer posts: nothing to retry.")
    if route.endpoint is None or not route.endpoint.enabled:
        raise RetryRefused("The route's endpoint is disabled; enable the route's endpoint first.")
    if mail.state == InboundMail.State.HELD:
        # Held mail of a post route is released by posting it: the release's own path, audited like it.
        _, released = inbound_release(mail=mail)
        assert released is not None
        return released
    delivery = inbound_post_queue(mail, replay=True)
    assert delivery is not None
    return delivery


class NotHeld(RetryRefused):
    pass


@transaction.atomic
def inbound_release(*, mail: InboundMail) -> tuple[InboundMail, WebhookDelivery | None]:
    """Release held mail; (the mail, its post when its route posts). NotHeld when it is not held (any more);
    RetryRefused when its route posts to an endpoint that is disabled (it stays held, not silently unposted)."""
    # Locked so that two releases of the same mail post it once.
    # (Only its own row: PostgreSQL locks no nullable side of an outer join.)
    mail = InboundMail.objects.select_for_update(of=("self",)).select_related("route__endpoint").get(pk=mail.pk)
    if mail.state != InboundMail.State.HELD:
        raise NotHeld(f"The message is {mail.state}, not held: nothing to release.")
    route = mail.route
    posts = route is not None and route.action == Action.POST
    if posts and (route.endpoint is None or not route.endpoint.enabled):  # type: ignore[union-attr]
        raise RetryRefused("The route's endpoint is disabled; enable the route's endpoint first.")
    mail.state = InboundMail.State.STORED
    mail.note = f"{mail.note}; released by hand".lstrip("; ")[:300]
    mail.save(update_fields=["state", "note"])
    delivery = inbound_post_queue(mail, replay=True) if posts else None
    audit_record(
        organization=mail.organization_id,
        action="inbound.released",
        target=mail,
        target_label=f"{mail.rcpt_to}: {mail.subject}"[:200],
        changes={"state": [InboundMail.State.HELD, InboundMail.State.STORED], "posted": delivery is not None},
    )
    return mail, delivery
