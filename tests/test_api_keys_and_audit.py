"""Scoped API keys (create, list, rotate, revoke, limits, the creator's role) and the audit log, over the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, AuditEntry, Membership
from accounts.scopes import Scope, ScopeError
from accounts.services import api_key_create, api_key_rotate
from sending.models import Message, Suppression
from sending.streams.service import stream_create
from tests.conftest import verified_domain

pytestmark = pytest.mark.django_db

MESSAGE = {"from": "app@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hello"}


def client_for(secret: str, **extra: str) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_create_shows_the_secret_once_and_the_list_never(api, organization, domain):
    created = api.post(
        "/api/v1/api-keys",
        {"name": "billing", "scopes": ["send", "messages:read"], "domains": ["acme.example"],
         "networks": ["127.0.0.0/8"], "expires_at": (timezone.now() + timedelta(days=30)).isoformat()},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["key"].startswith("pwk_") and body["scopes"] == ["send", "messages:read"]
    assert (body["domains"], body["networks"]) == (["acme.example"], ["127.0.0.0/8"])
    stored = ApiKey.objects.get(pk=body["id"])
    assert body["key"] not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    listed = api.get("/api/v1/api-keys")
    assert listed.status_code == 200
    text = listed.content.decode()
    assert body["key"] not in text and stored.key_hash not in text and '"key"' not in text
    assert [k["name"] for k in listed.json()] == ["test", "billing"]
    assert listed.json()[0]["scopes"] == ["full"]  # a key made before scopes (or by an operator) keeps everything


def test_a_key_lacking_a_scope_gets_403_naming_it(organization, domain):
    _, secret = api_key_create(organization=organization, name="reader", scopes=["messages:read"])
    client = client_for(secret)
    assert client.get("/api/v1/messages").status_code == 200
    refused = client.post("/api/v1/messages", MESSAGE, format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "missing_scope",
        "message": "This API key lacks the scope 'send'.",
        "required_scope": "send",
        "key_scopes": ["messages:read"],
    }


def test_unknown_scope_and_bad_fields_are_400_naming_the_field(api, domain):
    bad = api.post("/api/v1/api-keys", {"name": "x", "scopes": ["sendd"]}, format="json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["scopes"]
    bad = api.post("/api/v1/api-keys", {"name": "x", "scopes": ["send"], "domains": ["other.example"]}, format="json")
    assert bad.status_code == 400 and bad.json()["fields"] == {"domains": {"0": ["other.example is not your domain."]}}
    bad = api.post("/api/v1/api-keys", {"name": "x", "scopes": ["send"], "networks": ["nope"]}, format="json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["networks"]
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    bad = api.post("/api/v1/api-keys", {"name": "x", "scopes": ["send"], "expires_at": past}, format="json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["expires_at"]
    assert not ApiKey.objects.filter(name="x").exists()


def test_a_key_cannot_make_a_key_with_more_than_it_has(organization, domain):
    _, secret = api_key_create(
        organization=organization, name="limited", scopes=["keys", "send"], domains=["acme.example"]
    )
    client = client_for(secret)
    wider = client.post("/api/v1/api-keys", {"name": "wider", "scopes": ["send", "domains"]}, format="json")
    assert wider.status_code == 403 and wider.json()["error"] == "not_grantable", wider.content
    full = client.post("/api/v1/api-keys", {"name": "full", "scopes": ["full"]}, format="json")
    assert full.status_code == 403
    unlimited = client.post("/api/v1/api-keys", {"name": "anydomain", "scopes": ["send"]}, format="json")
    assert unlimited.status_code == 403 and list(unlimited.json()["fields"]) == ["domains"]
    ok = client.post(
        "/api/v1/api-keys", {"name": "narrow", "scopes": ["send"], "domains": ["acme.example"]}, format="json"
    )
    assert ok.status_code == 201, ok.content


def test_a_member_cannot_give_a_key_more_than_their_role(organization):
    developer = get_user_model().objects.create_user(username="dev")
    Membership.objects.create(organization=organization, user=developer, role="developer")
    with pytest.raises(ScopeError) as refused:
        api_key_create(organization=organization, name="k", scopes=["keys"], created_by=developer)
    assert refused.value.forbidden and "developer" in str(refused.value)
    key, _ = api_key_create(organization=organization, name="k", scopes=["send"], created_by=developer)
    assert (key.member_bound, key.created_by) == (True, developer)


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(api, organization, domain):
    key, old = api_key_create(organization=organization, name="rotating", scopes=["messages:read"])
    rotated = api.post(f"/api/v1/api-keys/{key.pk}/rotate", {"grace_period": 3600}, format="json")
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["key"]
    assert new != old and new.startswith(f"pwk_{key.prefix}_")
    assert client_for(new).get("/api/v1/messages").status_code == 200
    assert client_for(old).get("/api/v1/messages").status_code == 200  # within the grace period
    # The grace period ends (as if an hour had passed): the old secret is refused at once, the new one works.
    ApiKey.objects.filter(pk=key.pk).update(previous_valid_until=timezone.now() - timedelta(seconds=1))
    assert client_for(old).get("/api/v1/messages").status_code == 401
    assert client_for(new).get("/api/v1/messages").status_code == 200
    # Rotating with no grace: the secret just replaced stops at once.
    _, newest = api_key_rotate(api_key=key, grace=timedelta(0))
    assert client_for(new).get("/api/v1/messages").status_code == 401
    assert client_for(newest).get("/api/v1/messages").status_code == 200
    too_long = api.post(f"/api/v1/api-keys/{key.pk}/rotate", {"grace_period": 8 * 24 * 3600}, format="json")
    assert too_long.status_code == 400 and list(too_long.json()["fields"]) == ["grace_period"]


def test_revocation_is_seen_by_the_next_request_whoever_made_it(organization, domain):
    """No process caches keys: a revocation written by another process (here, straight to the database) is
    refused on the very next request, as is one through the API."""
    key, secret = api_key_create(organization=organization, name="doomed", scopes=["full"])
    client = client_for(secret)
    assert client.get("/api/v1/messages").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert client.get("/api/v1/messages").status_code == 401
    other, other_secret = api_key_create(organization=organization, name="self-revoking", scopes=["keys"])
    revoked = client_for(other_secret).delete(f"/api/v1/api-keys/{other.pk}")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert client_for(other_secret).get("/api/v1/api-keys").status_code == 401


def test_expired_key_is_401(organization):
    key, secret = api_key_create(
        organization=organization, name="short", scopes=["full"], expires_at=timezone.now() + timedelta(hours=1)
    )
    assert client_for(secret).get("/api/v1/messages").status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = client_for(secret).get("/api/v1/messages")
    assert answer.status_code == 401 and "expired" in answer.json()["message"]


def test_network_limit_refuses_other_client_addresses(organization):
    _, secret = api_key_create(organization=organization, name="office", scopes=["full"], networks=["10.1.0.0/16"])
    assert client_for(secret, REMOTE_ADDR="10.1.2.3").get("/api/v1/messages").status_code == 200
    refused = client_for(secret, REMOTE_ADDR="10.2.0.1").get("/api/v1/messages")
    assert refused.status_code == 403 and refused.json()["error"] == "network_not_allowed"


def test_domain_limit_refuses_other_sender_domains(organization, domain, postwerk_network):
    verified_domain(postwerk_network, organization, "other-acme.example")
    _, secret = api_key_create(organization=organization, name="one-domain", scopes=["send"], domains=["acme.example"])
    client = client_for(secret)
    assert client.post("/api/v1/messages", MESSAGE, format="json").status_code == 202
    refused = client.post("/api/v1/messages", {**MESSAGE, "from": "app@other-acme.example"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"] == "domain_not_allowed"


def test_stream_limit_refuses_other_streams(organization, domain):
    stream_create(organization=organization, name="newsletter", kind="broadcast")
    _, news_only = api_key_create(organization=organization, name="news", scopes=["send"], streams=["newsletter"])
    _, tx_only = api_key_create(organization=organization, name="tx", scopes=["send"], streams=["transactional"])
    to_news = {**MESSAGE, "stream": "newsletter"}

    assert client_for(news_only).post("/api/v1/messages", to_news, format="json").status_code == 202
    assert client_for(tx_only).post("/api/v1/messages", MESSAGE, format="json").status_code == 202
    for secret, body in ((news_only, MESSAGE), (tx_only, to_news)):  # no stream named means transactional
        refused = client_for(secret).post("/api/v1/messages", body, format="json")
        assert (refused.status_code, refused.json()["error"]) == (403, "stream_not_allowed")
    assert Message.objects.count() == 2


# --- the audit log -----------------------------------------------------------------------------------------


def test_changes_by_a_key_are_recorded_with_the_key_and_address(organization, domain):
    key, secret = api_key_create(organization=organization, name="ops", scopes=["full"])
    client = client_for(secret, REMOTE_ADDR="192.0.2.10")
    created = client.post("/api/v1/api-keys", {"name": "made", "scopes": ["send"]}, format="json").json()
    client.post(f"/api/v1/api-keys/{created['id']}/rotate", {}, format="json")
    client.delete(f"/api/v1/api-keys/{created['id']}")
    client.post(f"/api/v1/domains/{domain.pk}/rotate-dkim", {}, format="json")
    client.post("/api/v1/suppressions", {"address": "x@dest.example"}, format="json")
    client.delete("/api/v1/suppressions/x@dest.example")
    entries = list(AuditEntry.objects.filter(organization=organization, api_key=key).order_by("id"))
    assert [e.action for e in entries] == [
        "api_key.created",
        "api_key.rotated",
        "api_key.revoked",
        "domain.dkim_rotated",
        "suppression.added",
        "suppression.lifted",
    ]
    first = entries[0]
    assert (first.actor_type, first.actor, first.ip) == ("api_key", f"API key ops ({key.prefix}…)", "192.0.2.10")
    assert first.changes["scopes"] == ["send"] and "key_hash" not in first.changes
    assert Suppression.objects.get(address="x@dest.example").removed_at is not None


def test_streams_and_templates_changed_by_a_key_are_recorded(organization):
    key, secret = api_key_create(organization=organization, name="builder", scopes=["streams", "templates"])
    client = client_for(secret)
    stream = client.post("/api/v1/streams", {"name": "news", "kind": "broadcast"}, format="json").json()
    client.patch(f"/api/v1/streams/{stream['id']}", {"description": "Monthly"}, format="json")
    body = {"alias": "welcome", "name": "Welcome", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
    assert client.post("/api/v1/templates", body, format="json").status_code == 201
    client.patch("/api/v1/templates/welcome", {"subject": "Hello {{ name }}"}, format="json")
    client.post("/api/v1/templates/welcome/versions/1/restore", {}, format="json")
    client.delete("/api/v1/templates/welcome")

    entries = AuditEntry.objects.filter(organization=organization, api_key=key).order_by("id")
    assert [(e.action, e.changes) for e in entries] == [
        ("stream.created", {"name": "news", "kind": "broadcast"}),
        ("stream.updated", {"description": ["", "Monthly"]}),
        ("template.created", {"alias": "welcome", "kind": "standard", "name": "Welcome"}),
        ("template.updated", {"fields": ["subject"], "alias": ["welcome", "welcome"]}),
        ("template.restored", {"version": 1}),
        ("template.deleted", {}),
    ]


def test_an_operators_admin_edit_of_a_key_is_recorded(organization):
    key, _ = api_key_create(organization=organization, name="ops")
    operator = get_user_model().objects.create_superuser("root", "root@ops.example", "pw")
    client = Client(REMOTE_ADDR="192.0.2.20")
    client.force_login(operator)
    change = reverse("admin:accounts_apikey_change", args=[key.pk])
    form = {"name": "ops-renamed", "organization": str(organization.pk), "scopes": '["full"]'}
    form |= {"allowed_domains": "[]", "allowed_streams": "[]", "allowed_networks": "[]", "member_bound": ""}

    response = client.post(change, form)

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditEntry.objects.get(organization=organization, action="api_key.changed_in_admin")
    assert (entry.actor_type, entry.user_id, entry.ip) == ("user", operator.pk, "192.0.2.20")
    assert entry.changes == {"name": ["ops", "ops-renamed"]}


def test_audit_log_api_filters_and_pages_by_cursor(organization, domain):
    _, secret = api_key_create(organization=organization, name="auditor", scopes=["audit:read", "keys", "send"])
    client = client_for(secret)
    for n in range(5):
        client.post("/api/v1/api-keys", {"name": f"k{n}", "scopes": ["send"]}, format="json")
    key = ApiKey.objects.get(name="k0")
    client.delete(f"/api/v1/api-keys/{key.pk}")
    page = client.get("/api/v1/audit-log", {"page_size": 2})
    assert page.status_code == 200
    body = page.json()
    assert [e["action"] for e in body["results"]] == ["api_key.revoked", "api_key.created"]
    seen = [e["id"] for e in body["results"]]
    while body["next"]:
        body = client.get(body["next"]).json()
        seen += [e["id"] for e in body["results"]]
    assert (
        seen == sorted(seen, reverse=True) and len(seen) == AuditEntry.objects.filter(organization=organization).count()
    )
    revoked = client.get("/api/v1/audit-log", {"action": "api_key.revoked"}).json()["results"]
    assert [(e["target_type"], e["target_id"], e["target"]) for e in revoked] == [
        ("apikey", str(key.pk), f"k0 ({key.prefix}…)")
    ]
    prefix = client.get("/api/v1/audit-log", {"action": "api_key."}).json()["results"]
    assert len(prefix) == 7  # the auditor key itself, five created, one revoked
    bad = client.get("/api/v1/audit-log", {"since": "yesterday"})
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["since"]
    no_scope = client_for(api_key_create(organization=organization, name="nope", scopes=["send"])[1])
    assert no_scope.get("/api/v1/audit-log").json()["required_scope"] == Scope.AUDIT_READ
