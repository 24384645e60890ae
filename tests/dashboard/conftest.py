"""Fixtures for the dashboard: members of each role, a second organization with one of everything (its ids must
answer 404), and messages sent through the real API and delivered to a loopback MX."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.services import api_key_create, organization_get_or_create, smtp_credential_create
from dashboard import login_limits
from sending.domains.service import domain_get_or_create
from sending.feedback.suppressions import suppression_add
from sending.models import DnsCheck, Message
from tests.conftest import add_mx_domain, deliver_queued
from tests.dashboard.browser import browser, ui  # noqa: F401 - the browser fixtures, registered once for every module

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Django's default PBKDF2 costs ~0.5 s per user; these tests create many users and test no hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_login_counters(monkeypatch) -> None:
    """Log-in failure counts live in the shared cache for a while: each test counts in its own namespace."""
    monkeypatch.setattr(login_limits, "PREFIX", f"login-fail-test-{uuid.uuid4().hex}")


@pytest.fixture(autouse=True)
def fresh_pause_caches():
    """Paused scopes and full send limits are cached per process: never from one test's database into the next."""
    from sending.reputation import holds
    from sending.reputation.rates import paused_scopes_clear

    paused_scopes_clear()
    holds._full_until.clear()
    yield
    paused_scopes_clear()
    holds._full_until.clear()


@pytest.fixture
def healthy(domain):  # type: ignore[no-untyped-def]
    """The verified acme.example with every check passing (the shared fixture publishes no SPF or DMARC)."""
    DnsCheck.objects.filter(domain=domain).update(status="ok", message="", ok_at=timezone.now())
    return domain


@pytest.fixture
def make_user(db) -> Callable:
    def make(username: str, *, staff: bool = False, **extra: object):  # type: ignore[no-untyped-def]
        return get_user_model().objects.create_user(
            username=username, email=f"{username}@people.example", password=PASSWORD, is_staff=staff, **extra
        )

    return make


@pytest.fixture
def member(organization, make_user) -> Callable:
    """member("admin") → a user with that role in Acme."""

    def make(role: str, username: str | None = None):  # type: ignore[no-untyped-def]
        user = make_user(username or role)
        Membership.objects.create(organization=organization, user=user, role=role)
        return user

    return make


@pytest.fixture
def owner(member):  # type: ignore[no-untyped-def]
    return member("owner")


@pytest.fixture
def as_user() -> Callable[..., Client]:
    def login(user, **kwargs: object) -> Client:  # type: ignore[no-untyped-def]
        client = Client(**kwargs)
        client.force_login(user)
        return client

    return login


@pytest.fixture
def owner_client(owner, as_user) -> Client:  # type: ignore[no-untyped-def]
    return as_user(owner)


@pytest.fixture
def other(db, make_user) -> dict:
    """Another organization with a domain, a message, a suppression, keys and a member."""
    org, _ = organization_get_or_create(name="Globex")
    domain, _ = domain_get_or_create(organization=org, name="globex.example")
    message = Message.objects.create(
        organization=org, domain=domain, message_id="<x@globex.example>", mail_from="a@globex.example", raw=b"", size=0
    )
    suppression_add(organization_id=org.pk, address="held@globex.example", reason="manual")
    api_key, _ = api_key_create(organization=org, name="globex-key")
    credential, _ = smtp_credential_create(organization=org, name="globex-smtp")
    membership = Membership.objects.create(organization=org, user=make_user("globex-owner"), role="owner")
    return {
        "org": org,
        "domain": domain,
        "message": message,
        "api_key": api_key,
        "credential": credential,
        "membership": membership,
    }


def send(api, **overrides: object) -> dict:  # type: ignore[no-untyped-def]
    body = {
        "from": "Acme <hello@acme.example>",
        "to": ["jane@dest.example"],
        "subject": "Your order",
        "text": "Thanks!",
        "html": "<p>Thanks!</p>",
        "tags": ["order"],
    }
    body.update(overrides)
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def pause(organization, scope: str = "organization", scope_id: int | None = None):  # type: ignore[no-untyped-def]
    from sending.reputation.rates import reputation_for_scope, reputation_pause

    rep = reputation_for_scope(organization.pk, scope, scope_id if scope_id is not None else organization.pk)
    return reputation_pause(rep, actor="user:ops", reason="bounces from a bought list")


@pytest.fixture
def delivered(api, zone, mx) -> dict:  # type: ignore[no-untyped-def]
    """One message to jane@dest.example, delivered by a loopback MX, and one to a recipient it refuses."""
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"gone@dest.example": "550 5.1.1 <gone@dest.example>: no such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sent = send(api)
    refused = send(api, to=["gone@dest.example"], subject="Bounce me", tags=["bounce"], html=None)
    deliver_queued()
    return {"sent": sent, "refused": refused}
