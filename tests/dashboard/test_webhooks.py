"""The Webhooks page: endpoints listed with their health, created and rotated with the secret shown once,
enabled, disabled, deleted, tested against a real receiver on loopback, deliveries replayed; who may do which,
another organization's ids, CSRF."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.services import organization_get_or_create
from mail.crypto import decrypt
from sending.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from sending.webhooks import dispatch
from sending.webhooks.endpoints import signing_secrets, webhook_endpoint_create
from sending.webhooks.signing import signature_verify
from tests.servers.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db

State = WebhookDelivery.State
ROLES = ["owner", "admin", "developer", "viewer"]
EVERYONE = set(ROLES)
SENDING = {"owner", "admin", "developer"}
ADMINS = {"owner", "admin"}


def url(name: str, org, *args: object) -> str:  # type: ignore[no-untyped-def]
    return reverse(f"dashboard:{name}", args=[org.pk, *args])


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    # The operator's allowances for a receiver on loopback over plain http.
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    settings.POSTWERK_WEBHOOK_TIMEOUT = 2.0
    return settings


@pytest.fixture
def receiver():
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def endpoint(organization, receiver) -> WebhookEndpoint:  # type: ignore[no-untyped-def]
    endpoint, _ = webhook_endpoint_create(organization=organization, url=receiver.url(), event_types=["delivered"])
    return endpoint


@pytest.fixture
def delivery(endpoint) -> WebhookDelivery:  # type: ignore[no-untyped-def]
    """A delivery that was tried once and got a 500."""
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        organization_id=endpoint.organization_id,
        payload={"type": "delivered", "id": "sample"},
        state=State.PENDING,
        attempts=1,
        last_status=500,
    )
    WebhookAttempt.objects.create(
        delivery=delivery, trigger="auto", duration_ms=42, status_code=500, response_excerpt="upstream exploded"
    )
    return delivery


@pytest.fixture
def foreign(db, receiver) -> dict:  # type: ignore[no-untyped-def]
    """Another organization's endpoint and delivery."""
    org, _ = organization_get_or_create(name="Globex")
    endpoint, _ = webhook_endpoint_create(organization=org, url=receiver.url("/globex"), event_types=[])
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, organization=org, payload={"type": "sent"})
    return {"endpoint": endpoint, "delivery": delivery}


# --- list and create ---------------------------------------------------------------------------------------


def test_empty_page_and_nav_entry(owner_client, organization):
    response = owner_client.get(url("webhooks", organization))
    assert response.status_code == 200
    page = response.content.decode()
    assert "No webhook endpoints yet" in page and 'aria-current="page">Webhooks<' in page
    assert "Add an endpoint" in page


def test_create_shows_the_secret_once_and_it_signs_the_test_event(owner_client, organization, receiver):
    response = owner_client.post(
        url("webhook_add", organization),
        {"url": receiver.url(), "event_types": ["delivered", "bounced"], "description": "orders"},
    )
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    endpoint, secret = response.context["new_endpoint"]
    assert secret.startswith("whsec_") and secret.encode() in response.content
    assert b"shown only this once" in response.content
    endpoint = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert endpoint.organization == organization and endpoint.event_types == ["delivered", "bounced"]
    assert endpoint.description == "orders"
    assert secret not in endpoint.secret_encrypted

    listing = owner_client.get(url("webhooks", organization)).content.decode()
    assert secret not in listing and receiver.url() in listing and "delivered, bounced" in listing
    assert "never" in listing  # no attempt yet
    detail = owner_client.get(url("webhook", organization, endpoint.pk)).content.decode()
    assert secret not in detail and "No deliveries yet" in detail

    # The secret shown is the one that signs.
    response = owner_client.post(url("webhook_test", organization, endpoint.pk), {"type": "bounced"}, follow=True)
    assert b"Test event answered 200" in response.content
    (request,) = receiver.requests
    assert json.loads(request.body)["type"] == "bounced"
    assert signature_verify(request.headers["postwerk-signature"], request.body, secret)


def test_create_with_every_event_type_when_none_ticked(owner_client, organization, receiver):
    assert owner_client.post(url("webhook_add", organization), {"url": receiver.url()}).status_code == 201
    assert WebhookEndpoint.objects.get().event_types == []
    assert b"every event" in owner_client.get(url("webhooks", organization)).content
    assert WebhookEndpoint.objects.get().payload_format == "postwerk"


def test_create_with_postmarks_payload_format(owner_client, organization, receiver):
    data = {"url": receiver.url(), "payload_format": "postmark"}
    assert owner_client.post(url("webhook_add", organization), data).status_code == 201
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.payload_format == "postmark"
    detail = owner_client.get(url("webhook", organization, endpoint.pk)).content.decode()
    assert "<dt>Payload format</dt><dd>Postmark</dd>" in detail


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"url": ""}, b"This field is required"),
        ({"url": "ftp://example.com/x"}, b"must be http(s)"),
        ({"url": "http://127.0.0.1/x", "event_types": ["nope"]}, b"Select a valid choice"),
        ({"url": "http://127.0.0.1/x", "payload_format": "sendgrid"}, b"Select a valid choice"),
    ],
)
def test_create_refuses_bad_input(owner_client, organization, data, error):
    response = owner_client.post(url("webhook_add", organization), data)
    assert response.status_code == 400
    assert error in response.content, response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_create_refuses_a_private_address_unless_the_operator_allows_it(owner_client, organization, settings):
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = False
    response = owner_client.post(url("webhook_add", organization), {"url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 400 and b'class="error"' in response.content
    assert not WebhookEndpoint.objects.exists()


def test_list_shows_failing_since_disabled_and_last_attempt(owner_client, organization, endpoint, delivery):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())
    page = owner_client.get(url("webhooks", organization)).content.decode()
    row = page.split(endpoint.url, 1)[1].split("</tr>", 1)[0]
    assert 'badge-ok">enabled' in row and ">500<" in row and "—" not in row

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="410 Gone")
    row = owner_client.get(url("webhooks", organization)).content.decode().split(endpoint.url, 1)[1]
    assert "disabled" in row.split("</tr>", 1)[0] and "410 Gone" in row.split("</tr>", 1)[0]


# --- one endpoint: attempts, rotate, enable/disable, delete, test, replay ------------------------------------


def test_detail_shows_each_delivery_with_its_attempts(owner_client, organization, endpoint, delivery):
    page = owner_client.get(url("webhook", organization, endpoint.pk)).content.decode()
    assert "upstream exploded" in page and "42 ms" in page and ">500<" in page and "Replay" in page
    assert "delivered" in page and "pending" in page


def test_rotate_shows_the_new_secret_once_and_the_old_one_overlaps(owner_client, organization, endpoint):
    before = signing_secrets(endpoint)
    response = owner_client.post(url("webhook_rotate", organization, endpoint.pk))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = response.context["new_secret"]
    assert secret.encode() in response.content and b"shown only this once" in response.content
    endpoint.refresh_from_db()
    assert decrypt(endpoint.secret_encrypted).decode() == secret
    assert signing_secrets(endpoint) == [secret, *before]
    assert secret.encode() not in owner_client.get(url("webhook", organization, endpoint.pk)).content


def test_disable_then_enable_forgets_failures(owner_client, organization, endpoint):
    response = owner_client.post(url("webhook_enabled", organization, endpoint.pk), {"enabled": "0"}, follow=True)
    assert b"disabled." in response.content
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_at is not None

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=endpoint.disabled_at)
    owner_client.post(url("webhook_enabled", organization, endpoint.pk), {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is None and endpoint.disabled_at is None

    response = owner_client.post(url("webhook_enabled", organization, endpoint.pk), {"enabled": "x"}, follow=True)
    assert b"Choose enable or disable" in response.content
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_delete_removes_the_endpoint_and_its_log(owner_client, organization, endpoint, delivery):
    response = owner_client.post(url("webhook_delete", organization, endpoint.pk), follow=True)
    assert response.redirect_chain[-1][0] == url("webhooks", organization)
    assert b"deleted" in response.content
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert not WebhookAttempt.objects.exists()


def test_failed_test_event_says_what_came_back(owner_client, organization, endpoint, receiver):
    receiver.status = 503
    response = owner_client.post(url("webhook_test", organization, endpoint.pk), {"type": "delivered"}, follow=True)
    assert b"Test event failed: 503" in response.content
    attempt = WebhookAttempt.objects.get()
    assert attempt.trigger == "test" and attempt.status_code == 503
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is None
    bad = owner_client.post(url("webhook_test", organization, endpoint.pk), {"type": "nope"}, follow=True)
    assert b"Unknown event type" in bad.content and len(receiver.requests) == 1


def test_replay_queues_the_delivery_and_the_attempt_shows_up(owner_client, organization, endpoint, delivery, receiver):
    response = owner_client.post(url("webhook_replay", organization, endpoint.pk, delivery.pk), follow=True)
    assert b"queued to be sent again" in response.content
    delivery.refresh_from_db()
    assert delivery.state == State.QUEUED and delivery.trigger == "replay"
    # The task the replay published (after commit), run here.
    assert dispatch.deliveries_send([str(delivery.pk)]) == 1
    assert len(receiver.requests) == 1
    page = owner_client.get(url("webhook", organization, endpoint.pk)).content.decode()
    assert "succeeded" in page and "replay" in page


def test_replay_to_a_disabled_endpoint_is_refused(owner_client, organization, endpoint, delivery):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    response = owner_client.post(url("webhook_replay", organization, endpoint.pk, delivery.pk), follow=True)
    assert b"enable it first" in response.content
    delivery.refresh_from_db()
    assert delivery.state == State.PENDING


# --- who may do what ----------------------------------------------------------------------------------------

# (method, url name, which ids, POST data, roles allowed)
ACTIONS = [
    ("get", "webhooks", [], None, EVERYONE),
    ("get", "webhook", ["endpoint"], None, EVERYONE),
    ("post", "webhook_add", [], {"url": "http://127.0.0.1:9/new"}, ADMINS),
    ("post", "webhook_rotate", ["endpoint"], {}, ADMINS),
    ("post", "webhook_enabled", ["endpoint"], {"enabled": "0"}, ADMINS),
    ("post", "webhook_delete", ["endpoint"], {}, ADMINS),
    ("post", "webhook_test", ["endpoint"], {"type": "delivered"}, SENDING),
    ("post", "webhook_replay", ["endpoint", "delivery"], {}, SENDING),
]
# An allowed POST redirects after success, except these pages, which show the new secret once.
POST_ANSWERS = {"webhook_add": 201, "webhook_rotate": 200}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "name", "args", "data", "allowed"), ACTIONS, ids=[a[1] for a in ACTIONS])
def test_role_permissions(role, method, name, args, data, allowed, member, as_user, organization, endpoint, delivery):
    client = as_user(member(role, username=f"the-{role}"))
    ids = {"endpoint": endpoint.pk, "delivery": delivery.pk}
    path = url(name, organization, *(ids[a] for a in args))
    response = client.post(path, data) if method == "post" else client.get(path)
    if role in allowed:
        expected = 200 if method == "get" else POST_ANSWERS.get(name, 302)
        assert response.status_code == expected, (role, name, response.status_code)
    else:
        assert response.status_code == 403, (role, name, response.status_code)
        assert b"Not allowed" in response.content


def test_refused_actions_change_nothing(member, as_user, organization, endpoint, delivery, receiver):
    developer = as_user(member("developer", username="d"))
    before = endpoint.secret_encrypted
    developer.post(url("webhook_add", organization), {"url": "http://127.0.0.1:9/sneaky"})
    developer.post(url("webhook_rotate", organization, endpoint.pk))
    developer.post(url("webhook_enabled", organization, endpoint.pk), {"enabled": "0"})
    developer.post(url("webhook_delete", organization, endpoint.pk))
    viewer = as_user(member("viewer", username="v"))
    viewer.post(url("webhook_test", organization, endpoint.pk), {"type": "delivered"})
    viewer.post(url("webhook_replay", organization, endpoint.pk, delivery.pk))
    endpoint.refresh_from_db()
    delivery.refresh_from_db()
    assert WebhookEndpoint.objects.count() == 1 and endpoint.enabled and endpoint.secret_encrypted == before
    assert delivery.state == State.PENDING and WebhookDelivery.objects.count() == 1 and not receiver.requests


def test_page_shows_each_role_only_the_buttons_it_may_use(member, as_user, organization, endpoint, delivery):
    def pages(role: str) -> str:
        client = as_user(member(role, username=f"r-{role}"))
        return (
            client.get(url("webhooks", organization)).content.decode()
            + client.get(url("webhook", organization, endpoint.pk)).content.decode()
        )

    admin = pages("admin")
    for label in ("Add an endpoint", "Rotate secret", ">Disable<", "Delete endpoint", "Send test event", "Replay"):
        assert label in admin, label
    developer = pages("developer")
    assert "Send test event" in developer and "Replay" in developer
    for label in ("Add an endpoint", "Rotate secret", ">Disable<", "Delete endpoint"):
        assert label not in developer, label
    viewer = pages("viewer")
    assert endpoint.url in viewer and "upstream exploded" in viewer
    for label in ("Add an endpoint", "Rotate secret", ">Disable<", "Delete endpoint", "Send test event", "Replay"):
        assert label not in viewer, label
    assert all('<form method="post"' not in main.split("</main>", 1)[0] for main in viewer.split("<main")[1:])


@pytest.mark.parametrize(
    ("method", "name", "keys"),
    [
        ("get", "webhook", ["endpoint"]),
        ("post", "webhook_rotate", ["endpoint"]),
        ("post", "webhook_enabled", ["endpoint"]),
        ("post", "webhook_delete", ["endpoint"]),
        ("post", "webhook_test", ["endpoint"]),
        ("post", "webhook_replay", ["endpoint", "delivery"]),
    ],
)
def test_another_organizations_ids_are_not_found(owner_client, organization, foreign, receiver, method, name, keys):
    path = url(name, organization, *(foreign[k].pk for k in keys))
    data = {"enabled": "0", "type": "delivered"} if method == "post" else None
    response = getattr(owner_client, method)(path, data)
    assert response.status_code == 404 and b"Not found" in response.content
    assert WebhookEndpoint.objects.get(pk=foreign["endpoint"].pk).enabled
    assert not receiver.requests
    assert WebhookDelivery.objects.get(pk=foreign["delivery"].pk).state == State.PENDING


def test_own_endpoint_with_another_organizations_delivery_is_not_found(owner_client, organization, endpoint, foreign):
    response = owner_client.post(url("webhook_replay", organization, endpoint.pk, foreign["delivery"].pk))
    assert response.status_code == 404


def test_another_organizations_endpoints_are_not_listed(owner_client, organization, foreign):
    assert b"/globex" not in owner_client.get(url("webhooks", organization)).content


def test_every_webhook_form_needs_its_csrf_token(owner, organization, endpoint, delivery):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(url("webhook_add", organization), {"url": "http://127.0.0.1:9/csrf"})
    assert response.status_code == 403 and b"This form has expired" in response.content
    assert client.post(url("webhook_delete", organization, endpoint.pk)).status_code == 403
    assert WebhookEndpoint.objects.count() == 1
    for page in (url("webhooks", organization), url("webhook", organization, endpoint.pk)):
        html = client.get(page).content.decode()
        assert html.count('name="csrfmiddlewaretoken"') == html.count('<form method="post"')
