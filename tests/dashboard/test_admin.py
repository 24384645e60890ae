"""The operators' Django admin: every model is registered, and every list (with its filters and search) and
change page renders."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, Membership, Organization, SmtpCredential
from sending.models import (
    DkimKey,
    DnsCheck,
    Domain,
    Event,
    InboundMessage,
    Message,
    Recipient,
    Suppression,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

pytestmark = pytest.mark.django_db

EXPECTED = [
    Organization,
    ApiKey,
    SmtpCredential,
    Domain,
    DnsCheck,
    Message,
    Recipient,
    Event,
    Suppression,
    InboundMessage,
    WebhookEndpoint,
    WebhookDelivery,
    WebhookAttempt,
]


@pytest.fixture
def superuser_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@ops.example", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_every_model_that_matters_is_registered():
    missing = [m.__name__ for m in EXPECTED if m not in admin.site._registry]
    assert not missing
    # Keys and memberships are edited where they belong: keys through rotation, members inline on the org.
    assert DkimKey not in admin.site._registry and Membership not in admin.site._registry


def test_every_changelist_and_change_page_renders(superuser_client, api, zone, mx, domain):
    from sending.feedback.suppressions import suppression_add
    from sending.models import InboundMessage
    from tests.conftest import add_mx_domain, deliver_queued
    from tests.dashboard.conftest import send

    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    send(api)
    deliver_queued()
    suppression_add(organization_id=domain.organization_id, address="x@dest.example", reason="manual")
    InboundMessage.objects.create(raw=b"From: x\r\n\r\nhi", size=13, mail_from="mailer-daemon@dest.example")
    for model, registered in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        response = superuser_client.get(changelist)
        assert response.status_code == 200, (opts.label, response.status_code)
        if registered.search_fields:
            assert superuser_client.get(changelist, {"q": "example"}).status_code == 200, opts.label
        for list_filter in registered.list_filter:
            assert list_filter  # rendered as part of the changelist above
        obj = model._default_manager.first()
        if obj is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            assert superuser_client.get(change).status_code == 200, (opts.label, "change")


def test_domain_list_shows_verification_and_checks(superuser_client, domain):
    response = superuser_client.get(reverse("admin:sending_domain_changelist"), {"verified": "yes"})
    assert b"acme.example" in response.content
    response = superuser_client.get(reverse("admin:sending_domain_change", args=[domain.pk]))
    assert b"ownership" in response.content and b"dkim:" in response.content
    response = superuser_client.get(reverse("admin:sending_dnscheck_changelist"), {"status__exact": "ok"})
    assert b"acme.example" in response.content


def test_webhook_models_are_listed_and_never_show_the_secret(superuser_client, organization, settings):
    from sending.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
    from sending.webhooks.endpoints import signing_secrets, webhook_endpoint_create

    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    endpoint, secret = webhook_endpoint_create(organization=organization, url="http://127.0.0.1:9/hook", event_types=[])
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, organization=organization, payload={"type": "sent"})
    attempt = WebhookAttempt.objects.create(delivery=delivery, trigger="test", status_code=502, error="bad gateway")
    for model, obj in ((WebhookEndpoint, endpoint), (WebhookDelivery, delivery), (WebhookAttempt, attempt)):
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        for query in ({}, {"q": "127.0.0.1"}):
            response = superuser_client.get(changelist, query)
            assert response.status_code == 200 and b"127.0.0.1:9/hook" in response.content, opts.label
        change = superuser_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        assert change.status_code == 200, opts.label
        assert secret.encode() not in change.content
        assert endpoint.secret_encrypted.encode() not in change.content
    assert superuser_client.get(reverse("admin:sending_webhookendpoint_add")).status_code == 403
    assert signing_secrets(endpoint) == [secret]


def membership_form(name: str, *members: tuple[int, str]) -> dict:
    """The organization add form with its membership inline, as the browser posts it."""
    data = {
        "name": name,
        "memberships-TOTAL_FORMS": str(len(members)),
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, (user_id, role) in enumerate(members):
        data |= {f"memberships-{i}-user": str(user_id), f"memberships-{i}-role": role}
    return data


def test_an_organization_cannot_be_saved_without_an_owner(superuser_client):
    dev = get_user_model().objects.create_user("dev", "dev@acme.example", "pw")
    boss = get_user_model().objects.create_user("boss", "boss@acme.example", "pw")
    add = reverse("admin:accounts_organization_add")

    for members in ((), ((dev.pk, "developer"),)):
        response = superuser_client.post(add, membership_form("Ownerless", *members))
        assert response.status_code == 200
        assert b"An organization needs at least one owner: add a member with the role owner." in response.content
    assert not Organization.objects.filter(name="Ownerless").exists()

    response = superuser_client.post(add, membership_form("Owned", (dev.pk, "developer"), (boss.pk, "owner")))
    assert response.status_code == 302
    owned = Organization.objects.get(name="Owned")
    assert sorted(owned.memberships.values_list("user__username", "role")) == [("boss", "owner"), ("dev", "developer")]

    # Nor can the last owner be removed afterwards.
    owner_row = owned.memberships.get(role="owner")
    change = reverse("admin:accounts_organization_change", args=[owned.pk])
    form = membership_form("Owned") | {"memberships-TOTAL_FORMS": "2", "memberships-INITIAL_FORMS": "2"}
    for i, row in enumerate(owned.memberships.order_by("pk")):
        form |= {
            f"memberships-{i}-id": str(row.pk),
            f"memberships-{i}-organization": str(owned.pk),
            f"memberships-{i}-user": str(row.user_id),
            f"memberships-{i}-role": row.role,
        }
        if row.pk == owner_row.pk:
            form[f"memberships-{i}-DELETE"] = "on"
    response = superuser_client.post(change, form)
    assert response.status_code == 200
    assert b"An organization needs at least one owner" in response.content
    assert owned.memberships.filter(role="owner").exists()


def test_the_admin_will_not_delete_an_organizations_only_owner(superuser_client):
    boss = get_user_model().objects.create_user("boss", "boss@acme.example", "pw")
    acme = Organization.objects.create(name="Acme")
    Membership.objects.create(organization=acme, user=boss, role=Membership.Role.OWNER)
    delete = reverse("admin:auth_user_delete", args=[boss.pk])

    page = superuser_client.get(delete).content.decode()
    refused = superuser_client.post(delete, {"post": "yes"})

    assert "boss is the only owner of the organization Acme: make another member its owner first" in page
    assert refused.status_code == 200  # the refusal page again, nothing deleted
    assert get_user_model().objects.filter(pk=boss.pk).exists()
    assert acme.memberships.filter(user=boss, role="owner").exists()

    # With a second owner the first may go.
    other = get_user_model().objects.create_user("other", "other@acme.example", "pw")
    Membership.objects.create(organization=acme, user=other, role=Membership.Role.OWNER)
    assert superuser_client.post(delete, {"post": "yes"}).status_code == 302
    assert not get_user_model().objects.filter(pk=boss.pk).exists()


def test_the_admin_spells_webhook_deliveries(superuser_client):
    index = superuser_client.get(reverse("admin:index")).content.decode()
    assert "Webhook deliveries" in index and "Webhook deliverys" not in index


def test_memberships_changed_in_the_admin_are_audited(superuser_client):
    from accounts.models import AuditEntry

    dev = get_user_model().objects.create_user("dev", "dev@acme.example", "pw")
    boss = get_user_model().objects.create_user("boss", "boss@acme.example", "pw")
    add = reverse("admin:accounts_organization_add")
    response = superuser_client.post(
        add, membership_form("Audited", (dev.pk, "developer"), (boss.pk, "owner")), REMOTE_ADDR="192.0.2.77"
    )
    assert response.status_code == 302
    org = Organization.objects.get(name="Audited")
    entries = AuditEntry.objects.filter(organization=org, action="member.added").order_by("target")
    assert [(e.target, e.changes["role"], e.actor_type, e.ip) for e in entries] == [
        ("boss", "owner", "user", "192.0.2.77"),
        ("dev", "developer", "user", "192.0.2.77"),
    ]
