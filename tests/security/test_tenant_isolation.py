"""Tenant isolation: every API endpoint and every dashboard page, asked by Acme for Globex's objects, answers 404
(or 403) and changes nothing; lists never show Globex's data; the admin is for operators only.

The URL patterns are enumerated from the project's URLconf, so a new endpoint whose URL names an id this test
does not know how to fill in fails here until it is added to `API_IDS`/`DASHBOARD_IDS`, and a new top-level
route fails until it is classified below.

Scopes are checked over the same enumeration: every API route must declare `required_scope` for each of its
methods (sending.api.permissions), a key lacking that scope gets 403 naming it, a key holding only that scope
is let through, and a key whose member was demoted to viewer may read but not change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, Invitation, Membership, SmtpCredential
from accounts.scopes import Scope, role_allows
from accounts.services import (
    api_key_create,
    organization_get_or_create,
    ses_access_key_issue,
    smtp_credential_create,
)
from sending.api.permissions import required_scope
from sending.feedback.suppressions import suppression_add
from sending.inbound.routes import inbound_domain_set, inbound_route_create
from sending.models import (
    CapturedMessage,
    DkimKey,
    Event,
    InboundMail,
    InboundRoute,
    Message,
    Reputation,
    ReputationScope,
    ReputationState,
    Stream,
    Suppression,
    Template,
    WebhookDelivery,
    WebhookEndpoint,
)
from sending.templating.service import template_create
from sending.webhooks.endpoints import webhook_endpoint_create
from tests.conftest import verified_domain
from verification.models import VerificationJob

pytestmark = pytest.mark.django_db

GLOBEX_MARKERS = ("globex.example", "secret-b@dest.example", "globex-hook")
# Routes that are not an organization's objects: public by design, or operator-only (tested below).
NOT_TENANT_SCOPED = {
    "healthz",
    "api/schema/",
    "api/docs/",
    "api/redoc/",
    "",  # dashboard: home redirect
    "login/",
    "logout/",
    "account/password/",
    "metrics",  # Prometheus text, platform-wide counters with no organization data (operators' scrape)
    "invite/<str:token>/",  # the token is the capability (only its hash is stored); no organization id in the URL
    "invite/<str:token>/signup",
    # The signed-in person's own two-factor devices (request.user's only; no id in the URL).
    "account/two-factor/",
    "account/two-factor/confirm",
    "login/verify/",
    # OpenID Connect sign-in (404 unless configured): no organization in the URL.
    "oidc/authenticate/",
    "oidc/callback/",
    "signin/<str:token>",  # the one-time sign-in link: the token is the capability (only its hash is stored)
    # An inbound post's links to its raw message and attachments: the signed, expiring token is the capability.
    "inbound-files/<str:token>",
}
# Operators' pages (staff only): test_operator_pages_are_staff_only.
OPERATOR_PREFIX = "ops/"
OPERATOR_ACTIONS = {  # POST only; every other operator route is a page
    "ops/logins/unlock",
    "ops/organizations/<int:organization_id>/limits",
    "ops/organizations/<int:organization_id>/recompute",
    "ops/organizations/<int:organization_id>/reputations/<int:reputation_id>/<str:action>",
}


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


def routes(prefix: str) -> list[tuple[str, URLPattern]]:
    return [(route, p) for route, p in walk(get_resolver().url_patterns) if route.startswith(prefix)]


def fill(route: str, ids: dict[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in ids:
            pytest.fail(f"{route}: no tenant-isolation case for <{name}>; add it to this test")
        return str(ids[name])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", one, route)


@pytest.fixture
def globex(zone, settings, make_user_b) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Another organization with one of everything, made through the same services the API uses."""
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    org, _ = organization_get_or_create(name="Globex")
    domain = verified_domain(zone, org, "globex.example")
    api_key, secret = api_key_create(organization=org, name="globex-key")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    sent = client.post(
        "/api/v1/messages",
        {"from": "b@globex.example", "to": ["secret-b@dest.example"], "subject": "globex.example", "text": "x"},
        content_type="application/json",
    )
    assert sent.status_code == 202, sent.content
    message = Message.objects.get(pk=sent.json()["id"])
    event = Event.objects.filter(organization=org).first()
    suppression_add(organization_id=org.pk, address="held@globex.example", reason="manual")
    endpoint, _ = webhook_endpoint_create(organization=org, url="https://127.0.0.9/globex-hook", event_types=[])
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, organization=org, event=event)
    credential, _ = smtp_credential_create(organization=org, name="globex-smtp")
    template = template_create(organization=org, alias="globex-welcome", name="Globex welcome", text="globex.example")
    job = VerificationJob.objects.create(organization=org, total=1, created_at=timezone.now())
    membership = Membership.objects.create(organization=org, user=make_user_b("globex-owner"), role="owner")
    reputation = Reputation.objects.create(
        organization=org, scope=ReputationScope.ORGANIZATION, scope_id=org.pk, state=ReputationState.PAUSED
    )
    capture = CapturedMessage.objects.create(
        organization=org,
        message=message,
        recipient=message.recipients.get(),
        mail_from="b-x@bounces.postwerk.example",
        rcpt_to="secret-b@dest.example",
        attempt=1,
        data=b"Subject: globex.example\r\nContent-Type: text/html\r\n\r\n<p>globex.example</p>\r\n",
        size=60,
        code=250,
        outcome="delivered",
    )
    inbound_domain_set(domain=domain, enabled=True)
    route, _ = inbound_route_create(
        organization=org, match="support@globex.example", action="post", url="https://127.0.0.9/globex-hook"
    )
    inbound = InboundMail.objects.create(
        organization=org, route=route, action="post", rcpt_to="support@globex.example", size=1, raw=b"x"
    )
    invitation = Invitation.objects.create(
        organization=org,
        email="new@globex.example",
        token_hash="0" * 64,
        expires_at=timezone.now() + timezone.timedelta(days=7),
    )
    return {
        "org": org,
        "domain": domain,
        "api_key": api_key,
        "message": message,
        "event": event,
        "endpoint": endpoint,
        "delivery": delivery,
        "credential": credential,
        "job": job,
        "membership": membership,
        "reputation": reputation,
        "invitation": invitation,
        "capture": capture,
        "template": template,
        "route": route,
        "inbound": inbound,
        "dkim_keys": DkimKey.objects.filter(domain=domain).count(),
        "stream": Stream.objects.get(organization=org, name="transactional"),
    }


@pytest.fixture
def make_user_b(db, settings):  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def make(username: str, **extra: object):  # type: ignore[no-untyped-def]
        return get_user_model().objects.create_user(username=username, password="pw-not-used", **extra)

    return make


def assert_globex_untouched(b: dict[str, Any]) -> None:
    assert Message.objects.filter(pk=b["message"].pk).exists()
    b["domain"].refresh_from_db()
    assert DkimKey.objects.filter(domain=b["domain"]).count() == b["dkim_keys"]
    assert Suppression.objects.get(organization=b["org"], address="held@globex.example").removed_at is None
    endpoint = WebhookEndpoint.objects.get(pk=b["endpoint"].pk)
    assert (endpoint.enabled, endpoint.secret_encrypted, endpoint.url) == (
        b["endpoint"].enabled,
        b["endpoint"].secret_encrypted,
        b["endpoint"].url,
    )
    assert WebhookDelivery.objects.get(pk=b["delivery"].pk).attempts == 0
    assert b["message"].recipients.get().state != "cancelled"  # the cancel endpoints answered 404
    stream = Stream.objects.get(pk=b["stream"].pk)
    assert (stream.description, stream.track_opens) == (b["stream"].description, b["stream"].track_opens)
    assert SmtpCredential.objects.get(pk=b["credential"].pk).revoked_at is None
    api_key = ApiKey.objects.get(pk=b["api_key"].pk)
    assert (api_key.revoked_at, api_key.key_hash) == (None, b["api_key"].key_hash)
    assert Membership.objects.get(pk=b["membership"].pk).role == "owner"
    assert VerificationJob.objects.filter(pk=b["job"].pk).exists()
    assert Reputation.objects.get(pk=b["reputation"].pk).state == ReputationState.PAUSED
    assert Invitation.objects.get(pk=b["invitation"].pk).revoked_at is None
    assert Template.objects.get(pk=b["template"].pk).active_version.number == 1
    route = InboundRoute.objects.get(pk=b["route"].pk)
    assert (route.action, route.endpoint.enabled) == ("post", True)
    assert not WebhookDelivery.objects.filter(inbound_mail=b["inbound"]).exists()  # no retry was queued


def test_every_route_is_classified():
    known = ("api/v1/", "t/", "admin/", "o/<int:org_id>/", OPERATOR_PREFIX, SES_PREFIX)
    unclassified = [
        route
        for route, pattern in walk(get_resolver().url_patterns)
        if not route.startswith(known) and route not in NOT_TENANT_SCOPED and not _postmark(pattern)
    ]
    assert not unclassified, f"classify these routes in the tenant-isolation test: {unclassified}"


# --- API ---------------------------------------------------------------------------------------------------


def api_ids(b: dict[str, Any]) -> dict[str, Any]:
    return {
        "message_id": b["message"].pk,
        "domain_id": b["domain"].pk,
        "address": "held@globex.example",
        "event_id": b["event"].pk,
        "endpoint_id": b["endpoint"].pk,
        "delivery_id": b["delivery"].pk,
        "job_id": b["job"].pk,
        "credential_id": b["credential"].pk,
        "reputation_id": b["reputation"].pk,
        "stream_id": b["stream"].pk,
        "key_id": b["api_key"].pk,
        "ref": b["template"].pk,
        "number": 1,
        "inbound_id": b["inbound"].pk,
        "route_id": b["route"].pk,
    }


def view_methods(pattern: URLPattern) -> list[str]:
    view_class = pattern.callback.view_class  # type: ignore[attr-defined]
    return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)]


def api_routes() -> list[tuple[str, URLPattern]]:
    """Every API route but the JSON 404 catch-all (it has no methods: it answers 404 to everything)."""
    found = [(route, p) for route, p in routes("api/v1/") if view_methods(p)]
    assert len(found) >= 30
    return found


def test_every_api_route_declares_a_scope_for_each_method():
    undeclared = [
        (route, method.upper())
        for route, pattern in api_routes()
        for method in view_methods(pattern)
        if required_scope(pattern.callback.view_class, method) not in Scope.values  # type: ignore[attr-defined]
    ]
    assert not undeclared, f"declare `required_scope` (accounts.scopes.Scope) on these API views: {undeclared}"


def _client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _each_route_and_method(b: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    ids = api_ids(b)
    for route, pattern in api_routes():
        for method in view_methods(pattern):
            scope = required_scope(pattern.callback.view_class, method)  # type: ignore[attr-defined]
            yield fill(route, ids), method, scope


def test_every_api_route_refuses_a_key_without_its_scope(organization, globex):
    """The scope is checked before anything else (before the id is looked up, before the body is read): a key
    with every scope but the one needed gets 403 naming it; a key with only that scope gets past the check."""
    checked = 0
    keys: dict[str, tuple[str, str]] = {}
    for url, method, scope in _each_route_and_method(globex):
        if scope not in keys:
            others = [s for s in Scope.values if s not in (scope, Scope.FULL)]
            _, without = api_key_create(organization=organization, name=f"without-{scope}", scopes=others)
            _, only = api_key_create(organization=organization, name=f"only-{scope}", scopes=[scope])
            keys[scope] = (without, only)
        without, only = keys[scope]
        refused = getattr(_client(without), method)(url, {}, format="json")
        assert refused.status_code == 403, (method.upper(), url, refused.status_code, refused.content)
        body = refused.json()
        assert (body["error"], body["required_scope"]) == ("missing_scope", scope), (method.upper(), url, body)
        allowed = getattr(_client(only), method)(url, {}, format="json")
        assert allowed.status_code != 403 or allowed.json()["error"] not in ("missing_scope", "role_forbids"), (
            method.upper(),
            url,
            allowed.content,
        )
        checked += 1
    assert checked >= 40
    assert_globex_untouched(globex)


def test_a_key_never_has_more_rights_than_its_member_has_now(organization, globex, make_user_b):
    """A key an owner made with `full` follows the owner's role: demoted to viewer, the key still reads what a
    viewer may read but changes nothing, and reads no secrets; removed, it can do nothing."""
    owner = make_user_b("acme-key-maker")
    membership = Membership.objects.create(organization=organization, user=owner, role="owner")
    _, secret = api_key_create(organization=organization, name="member-key", scopes=["full"], created_by=owner)
    client = _client(secret)
    membership.role = "viewer"
    membership.save()
    checked = 0
    for url, method, scope in _each_route_and_method(globex):
        response = getattr(client, method)(url, {}, format="json")
        if role_allows("viewer", scope, write=method != "get"):
            assert response.status_code != 403, (method.upper(), url, response.content)
        else:
            assert response.status_code == 403, (method.upper(), url, response.status_code, response.content)
            assert response.json()["error"] == "role_forbids" and response.json()["required_scope"] == scope
            checked += 1
    assert checked >= 25
    membership.delete()
    response = client.get("/api/v1/messages")
    assert response.status_code == 403 and response.json()["error"] == "role_forbids", response.content
    assert_globex_untouched(globex)


def test_every_api_endpoint_answers_404_for_another_organizations_ids(api, globex):
    checked = 0
    for route, pattern in routes("api/v1/"):
        if not pattern.pattern.converters:
            continue
        url = fill(route, api_ids(globex))
        for method in view_methods(pattern):
            response = getattr(api, method)(url, {}, format="json")
            assert response.status_code == 404, (method.upper(), url, response.status_code, response.content)
            # The answer may echo the URL it was given (an address), nothing else of Globex's.
            leaked = [m for m in GLOBEX_MARKERS if m in response.content.decode() and m not in url]
            assert not leaked, (method, url, leaked)
            checked += 1
    assert checked >= 20
    assert_globex_untouched(globex)


def test_api_lists_never_show_another_organizations_data(api, globex):
    for route, pattern in routes("api/v1/"):
        if pattern.pattern.converters or "get" not in view_methods(pattern):
            continue
        response = api.get("/" + route)
        assert response.status_code == 200, (route, response.status_code)
        body = response.content.decode()
        assert not any(marker in body for marker in GLOBEX_MARKERS), route
        assert str(globex["message"].pk) not in body and str(globex["endpoint"].pk) not in body, route


def test_api_key_of_one_organization_cannot_send_as_another(api, globex):
    response = api.post(
        "/api/v1/messages", {"from": "b@globex.example", "to": ["x@dest.example"], "text": "x"}, format="json"
    )
    assert response.status_code == 403, response.content
    assert Message.objects.filter(organization=globex["org"]).count() == 1


# --- the SES-compatible API (signed by an API key's SES access key) -----------------------------------------

SES_PREFIX = "v2/email/"


def _ses_request(access_key_id: str, secret: str, method: str, path: str, body: dict | None = None):  # type: ignore[no-untyped-def]
    """A request signed now by botocore's signer, sent through Django's test client."""
    data = json.dumps(body).encode() if body is not None else b""
    content_type = {"Content-Type": "application/json"} if data else {}  # none without a body, as the SDKs send
    request = AWSRequest(method=method, url=f"http://testserver{path}", data=data, headers=content_type)
    SigV4Auth(Credentials(access_key_id, secret), "ses", "eu-central-1").add_auth(request)
    headers = {
        f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request.headers.items() if k.lower() != "content-type"
    }
    # Django's test client sends no Host header; an HTTP/1.1 client always does, and signs it.
    return Client().generic(method, path, data, content_type="application/json", HTTP_HOST="testserver", **headers)


def test_every_ses_route_declares_a_scope_for_each_method():
    found = [(route, p) for route, p in routes(SES_PREFIX)]
    assert len(found) == 4
    undeclared = [
        (route, method.upper())
        for route, pattern in found
        for method in view_methods(pattern)
        if required_scope(pattern.callback.view_class, method) not in Scope.values  # type: ignore[attr-defined]
    ]
    assert not undeclared, undeclared


def test_ses_calls_never_reach_another_organizations_suppressions_or_domains(organization, domain, globex):
    api_key, _ = api_key_create(organization=organization, name="acme-ses")
    access_key_id, secret = ses_access_key_issue(api_key=api_key)
    address = "/v2/email/suppression/addresses/held%40globex.example"
    got = _ses_request(access_key_id, secret, "GET", address)
    assert (got.status_code, got["x-amzn-ErrorType"]) == (404, "NotFoundException")
    deleted = _ses_request(access_key_id, secret, "DELETE", address)
    assert (deleted.status_code, deleted["x-amzn-ErrorType"]) == (404, "NotFoundException")
    listed = _ses_request(access_key_id, secret, "GET", "/v2/email/suppression/addresses")
    assert listed.status_code == 200 and listed.json() == {"SuppressedDestinationSummaries": []}
    sent = _ses_request(
        access_key_id,
        secret,
        "POST",
        "/v2/email/outbound-emails",
        {
            "FromEmailAddress": "b@globex.example",
            "Destination": {"ToAddresses": ["x@dest.example"]},
            "Content": {"Simple": {"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "x"}}}},
        },
    )
    assert (sent.status_code, sent["x-amzn-ErrorType"]) == (400, "MessageRejected")
    assert Message.objects.filter(organization=globex["org"]).count() == 1
    assert_globex_untouched(globex)


# --- dashboard ---------------------------------------------------------------------------------------------


@pytest.fixture
def acme_owner(organization, make_user_b) -> Client:  # type: ignore[no-untyped-def]
    user = make_user_b("acme-owner")
    Membership.objects.create(organization=organization, user=user, role="owner")
    client = Client()
    client.force_login(user)
    return client


def dashboard_ids(b: dict[str, Any]) -> dict[str, Any]:
    return {
        "domain_id": b["domain"].pk,
        "message_id": b["message"].pk,
        "key_id": b["api_key"].pk,
        "credential_id": b["credential"].pk,
        "endpoint_id": b["endpoint"].pk,
        "delivery_id": b["delivery"].pk,
        "member_id": b["membership"].pk,
        "invitation_id": b["invitation"].pk,
        "reputation_id": b["reputation"].pk,
        "capture_id": b["capture"].pk,
        "template_id": b["template"].pk,
        "number": 1,
        "inbound_id": b["inbound"].pk,
        "route_id": b["route"].pk,
    }


def dashboard_routes() -> list[str]:
    found = [route for route, _ in routes("o/<int:org_id>/")]
    assert len(found) >= 20
    return found


def assert_refused(client: Client, url: str) -> None:
    answers = {}
    for method in ("get", "post"):
        response = getattr(client, method)(url, {"address": "held@globex.example", "role": "viewer"})
        answers[method] = response.status_code
        assert not any(marker in response.content.decode() for marker in GLOBEX_MARKERS), (method, url)
    # 405 says only that the method is wrong for the URL (decided before any lookup); never a 2xx or 3xx.
    assert set(answers.values()) <= {403, 404, 405} and set(answers.values()) & {403, 404}, (url, answers)


def test_every_dashboard_page_of_another_organization_is_404(acme_owner, organization, globex):
    ids = {"org_id": globex["org"].pk, **dashboard_ids(globex)}
    for route in dashboard_routes():
        assert_refused(acme_owner, fill(route, ids))
    assert_globex_untouched(globex)


def test_another_organizations_ids_under_ones_own_organization_are_404(acme_owner, organization, globex):
    ids = {"org_id": organization.pk, **dashboard_ids(globex)}
    for route in dashboard_routes():
        if "<" not in route.removeprefix("o/<int:org_id>/"):
            continue  # a page of Acme itself, listed in the next test
        assert_refused(acme_owner, fill(route, ids))
    assert_globex_untouched(globex)


def test_dashboard_lists_never_show_another_organizations_data(acme_owner, organization, globex):
    for route in dashboard_routes():
        if "<" in route.removeprefix("o/<int:org_id>/"):
            continue
        response = acme_owner.get(fill(route, {"org_id": organization.pk}))
        if response.status_code == 405:
            continue  # an action (POST only)
        assert response.status_code == 200, (route, response.status_code)
        body = response.content.decode()
        assert not any(marker in body for marker in GLOBEX_MARKERS), route


def test_operator_pages_are_staff_only(acme_owner, globex):
    ids = {"organization_id": globex["org"].pk, "reputation_id": globex["reputation"].pk, "action": "resume"}
    operator_routes = [route for route, _ in walk(get_resolver().url_patterns) if route.startswith(OPERATOR_PREFIX)]
    assert operator_routes
    for route in operator_routes:
        url = fill(route, ids)
        # A route refuses the method it does not take (405) before asking who is calling; the one it takes is 403.
        takes = "post" if route in OPERATOR_ACTIONS else "get"
        for method in ("get", "post"):
            assert getattr(acme_owner, method)(url).status_code == (403 if method == takes else 405), (method, url)
    assert_globex_untouched(globex)


# --- admin -------------------------------------------------------------------------------------------------


def admin_urls(b: dict[str, Any]) -> list[str]:
    urls = ["/admin/"]
    objects = {
        "organization": b["org"],
        "domain": b["domain"],
        "message": b["message"],
        "apikey": b["api_key"],
        "smtpcredential": b["credential"],
        "webhookendpoint": b["endpoint"],
        "webhookdelivery": b["delivery"],
        "event": b["event"],
    }
    for model in admin.site._registry:
        meta = model._meta
        urls.append(f"/admin/{meta.app_label}/{meta.model_name}/")
        if meta.model_name in objects:
            urls.append(f"/admin/{meta.app_label}/{meta.model_name}/{objects[meta.model_name].pk}/change/")
    return urls


def test_admin_is_for_operators_only(acme_owner, globex, make_user_b):
    """The admin is the operators' cross-organization tool: an organization's members (not staff) never get in,
    and staff see only the models they were given permissions for."""
    for url in admin_urls(globex):
        response = acme_owner.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    staff = Client()
    staff.force_login(make_user_b("new-operator", is_staff=True))
    for url in admin_urls(globex)[1:]:
        assert staff.get(url).status_code == 403, url


# --- the Postmark-compatible API (sending.compat.postmark) ---------------------------------------------------


def _postmark(pattern: URLPattern) -> bool:
    return (pattern.name or "").startswith("postmark-")


def postmark_routes(b: dict[str, Any]) -> list[tuple[str, list[str], str]]:
    """(URL filled with Globex's ids, methods, scope) of every Postmark route."""
    ids = {"message_id": b["message"].pk, "bounce_id": b["event"].pk, "stream": "outbound"}
    found = []
    for route, pattern in walk(get_resolver().url_patterns):
        if _postmark(pattern):
            view_class = pattern.callback.view_class  # type: ignore[attr-defined]
            url = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(ids[m.group(1)]), route).strip("^$")
            url = url.replace("/?", "")
            methods = view_methods(pattern)
            found.append((url, methods, required_scope(view_class, methods[0])))
    assert len(found) >= 8
    return found


def test_postmark_routes_declare_a_scope_and_refuse_a_key_without_it_as_postmark_does(organization, globex):
    for url, methods, scope in postmark_routes(globex):
        assert scope in Scope.values, url
        others = [s for s in Scope.values if s not in (scope, Scope.FULL)]
        _, without = api_key_create(organization=organization, name=f"pm-without-{scope}-{url}", scopes=others)
        for method in methods:
            response = getattr(Client(HTTP_X_POSTMARK_SERVER_TOKEN=without), method)(url, {}, "application/json")
            assert response.status_code == 401, (method, url, response.content)
            assert response.json()["ErrorCode"] == 10
    assert_globex_untouched(globex)


def test_postmark_reads_never_show_another_organizations_data(organization, globex, zone):
    verified_domain(zone, organization, "acme.example")
    _, secret = api_key_create(organization=organization, name="acme-pm")
    client = Client(HTTP_X_POSTMARK_SERVER_TOKEN=secret)
    for url, methods, _ in postmark_routes(globex):
        if "get" not in methods:
            continue
        response = client.get(url)
        text = response.content.decode()
        assert not any(marker in text for marker in GLOBEX_MARKERS), (url, text)
        if "/messages/outbound/" in url or re.search(r"/bounces/\d", url):
            assert (response.status_code, response.json().get("ErrorCode")) == (422, 701), (url, text)
    assert_globex_untouched(globex)
