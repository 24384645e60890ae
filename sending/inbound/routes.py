"""Inbound domains and routes: enabling a domain (or one subdomain) for inbound mail, and the routes' CRUD.

A `post` route owns a webhook endpoint of purpose `inbound` (created with it, its URL kept in step): the post is
signed with that endpoint's secret (returned once, when the route is created) and its attempts are that
endpoint's delivery log. Deleting a route disables its endpoint, so the log of past posts stays readable.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record, diff
from accounts.models import Organization
from mail.errors import PostwerkError
from sending.domains.service import DomainError, _label
from sending.inbound.matching import MatchError, match_parse
from sending.models import Domain, InboundRoute
from sending.webhooks.endpoints import EndpointError, webhook_endpoint_create, webhook_endpoint_update

Action = InboundRoute.Action


class RouteError(PostwerkError, ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def inbound_domain_set(*, domain: Domain, enabled: bool, subdomain: str = "") -> Domain:
    """Enable (or disable) inbound mail for the domain itself or for `subdomain`.<domain>."""
    try:
        label = _label(subdomain)
    except DomainError as exc:
        raise RouteError("subdomain", str(exc)) from exc
    if label and f"{label}.{domain.name}" in {domain.return_path_host, domain.tracking_host}:
        raise RouteError("subdomain", f"{label}.{domain.name} is already this domain's return-path or tracking host.")
    before = {"inbound_enabled": domain.inbound_enabled, "inbound_subdomain": domain.inbound_subdomain}
    with transaction.atomic():
        if label != domain.inbound_subdomain and domain.inbound_routes.exists():
            raise RouteError("subdomain", "Delete this domain's inbound routes before moving it to another host.")
        domain.inbound_enabled, domain.inbound_subdomain = enabled, label
        if not enabled:
            domain.inbound_mx_ok = False
        domain.save(update_fields=["inbound_enabled", "inbound_subdomain", "inbound_mx_ok"])
        changes = diff(before, {"inbound_enabled": enabled, "inbound_subdomain": label})
        if changes:
            audit_record(organization=domain.organization_id, action="domain.inbound", target=domain, changes=changes)
    return domain


def _domain_of(organization: Organization, host: str) -> Domain:
    label, _, parent = host.partition(".")
    for domain in Domain.objects.filter(organization=organization, name__in=[host, parent], inbound_enabled=True):
        if domain.inbound_host == host:
            return domain
    raise RouteError("match", f"{host} is not one of your inbound domains: enable inbound mail for it first.")


def _checked(organization: Organization, match: str, action: str, url: str, dmarc_reject: str, spam: str):  # type: ignore[no-untyped-def]
    try:
        parsed = match_parse(match)
    except MatchError as exc:
        raise RouteError("match", str(exc)) from exc
    if action not in Action.values:
        raise RouteError("action", f"action must be one of {', '.join(Action.values)}.")
    if dmarc_reject not in InboundRoute.DmarcReject.values:
        raise RouteError("dmarc_reject", f"dmarc_reject must be one of {', '.join(InboundRoute.DmarcReject.values)}.")
    if spam not in InboundRoute.DmarcReject.values:
        raise RouteError("spam", f"spam must be one of {', '.join(InboundRoute.DmarcReject.values)}.")
    if action == Action.POST and not url:
        raise RouteError("url", "A post route needs the URL to post to.")
    return parsed, _domain_of(organization, parsed.host)


def _endpoint_for(route: InboundRoute, url: str) -> str | None:
    """Create the route's endpoint, or move it to `url`; the new secret when one was created."""
    try:
        if route.endpoint is None:
            endpoint, secret = webhook_endpoint_create(
                organization=route.organization,
                url=url,
                event_types=[],
                description=f"inbound route {route.match}"[:200],
                purpose="inbound",
            )
            route.endpoint = endpoint
            return secret
        if url and url != route.endpoint.url:
            webhook_endpoint_update(endpoint=route.endpoint, url=url)
        if not route.endpoint.enabled:
            webhook_endpoint_update(endpoint=route.endpoint, enabled=True)
    except EndpointError as exc:
        raise RouteError(exc.field, exc.message) from exc
    return None


@transaction.atomic
def inbound_route_create(
    *,
    organization: Organization,
    match: str,
    action: str,
    url: str = "",
    dmarc_reject: str = InboundRoute.DmarcReject.ACCEPT,
    spam: str = InboundRoute.DmarcReject.ACCEPT,
    description: str = "",
) -> tuple[InboundRoute, str | None]:
    """A new route, and the signing secret of its endpoint for a post route (shown only now)."""
    parsed, domain = _checked(organization, match, action, url, dmarc_reject, spam)
    if InboundRoute.objects.filter(domain=domain, match=parsed.match).exists():
        raise RouteError("match", f"A route for {parsed.match} exists already.")
    route = InboundRoute(
        organization=organization,
        domain=domain,
        match=parsed.match,
        kind=parsed.kind,
        action=action,
        dmarc_reject=dmarc_reject,
        spam=spam,
        description=description,
    )
    secret = _endpoint_for(route, url) if action == Action.POST else None
    route.save()
    audit_record(
        organization=organization,
        action="inbound_route.created",
        target=route,
        target_label=route.match,
        changes={"match": route.match, "action": action, "url": url, "dmarc_reject": dmarc_reject, "spam": spam},
    )
    return route, secret


@transaction.atomic
def inbound_route_update(*, route: InboundRoute, **changes: str) -> tuple[InboundRoute, str | None]:
    """Change match, action, url, dmarc_reject, spam or description; a new secret when the route became a post route."""
    before = {
        "match": route.match,
        "action": route.action,
        "url": route.endpoint.url if route.endpoint else "",
        "dmarc_reject": route.dmarc_reject,
        "spam": route.spam,
        "description": route.description,
    }
    after = {**before, **{k: v for k, v in changes.items() if k in before}}
    parsed, domain = _checked(
        route.organization, after["match"], after["action"], after["url"], after["dmarc_reject"], after["spam"]
    )
    if InboundRoute.objects.filter(domain=domain, match=parsed.match).exclude(pk=route.pk).exists():
        raise RouteError("match", f"A route for {parsed.match} exists already.")
    route.domain, route.match, route.kind = domain, parsed.match, parsed.kind
    route.action, route.dmarc_reject, route.description = after["action"], after["dmarc_reject"], after["description"]
    route.spam = after["spam"]
    secret = _endpoint_for(route, after["url"]) if route.action == Action.POST else None
    route.updated_at = timezone.now()
    route.save()
    changed = diff(before, {**after, "match": route.match})
    if changed:
        audit_record(
            organization=route.organization_id,
            action="inbound_route.updated",
            target=route,
            target_label=route.match,
            changes=changed,
        )
    return route, secret


@transaction.atomic
def inbound_route_delete(*, route: InboundRoute) -> None:
    if route.endpoint is not None and route.endpoint.enabled:
        webhook_endpoint_update(endpoint=route.endpoint, enabled=False)
    audit_record(
        organization=route.organization_id, action="inbound_route.deleted", target=route, target_label=route.match
    )
    route.delete()
