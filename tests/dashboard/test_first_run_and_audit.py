"""First run (provision --owner and its one-time sign-in link), the operator's hint, the key page's scopes and the
audit log page."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, AuditEntry, Membership, Organization, SignInLink

pytestmark = pytest.mark.django_db


def provision(*args: str) -> dict:
    out = StringIO()
    call_command("provision", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def link_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def test_provision_owner_creates_the_user_as_owner_and_prints_a_sign_in_link(settings):
    settings.POSTWERK_DASHBOARD_URL = "http://127.0.0.1:8000"
    result = provision("--org", "Acme", "--owner", "Jane@Example.com", "--no-api-key")
    owner = result["owner"]
    assert (owner["email"], owner["user_created"]) == ("jane@example.com", True)
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/signin/[A-Za-z0-9_-]{43}", owner["sign_in_link"])
    user = get_user_model().objects.get(email="jane@example.com")
    assert not user.has_usable_password()
    org = Organization.objects.get(name="Acme")
    assert Membership.objects.get(organization=org, user=user).role == "owner"
    token = owner["sign_in_link"].rsplit("/", 1)[1]
    assert not SignInLink.objects.filter(token_hash=token).exists()  # only its hash is stored
    entry = AuditEntry.objects.get(organization=org, action="member.added")
    assert (entry.actor_type, entry.actor, entry.changes) == (
        "system",
        "manage.py provision",
        {"role": "owner", "new_account": True},
    )


def test_provision_owner_attaches_an_existing_member_as_owner(organization, make_user):
    user = make_user("dev")
    Membership.objects.create(organization=organization, user=user, role="developer")
    result = provision("--org", "Acme", "--owner", user.email, "--no-api-key")
    assert result["owner"]["user_created"] is False
    assert Membership.objects.get(organization=organization, user=user).role == "owner"
    out = StringIO()
    call_command("provision", "--org", "Acme", "--owner", user.email, "--no-api-key", stdout=out)
    assert "Sign-in link (works once, for a limited time): http" in out.getvalue()


def test_the_sign_in_link_works_once_and_lands_in_the_dashboard():
    result = provision("--org", "Acme", "--owner", "jane@example.com", "--no-api-key")
    path = link_path(result["owner"]["sign_in_link"])
    org = Organization.objects.get(name="Acme")
    browser = Client(enforce_csrf_checks=True)
    shown = browser.get(path)
    assert shown.status_code == 200 and b"Sign in as jane@example.com" in shown.content
    assert SignInLink.objects.get().used_at is None  # looking at it (a link scanner) does not use it
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', shown.content).group(1).decode()
    signed_in = browser.post(path, {"csrfmiddlewaretoken": csrf})
    assert signed_in.status_code == 302 and signed_in["Location"] == f"/o/{org.pk}/"
    overview = browser.get(signed_in["Location"])
    assert overview.status_code == 200 and b"Set a password" in overview.content
    again = Client().post(path)
    assert again.status_code == 404 and b"not valid any more" in again.content
    assert Client().get(path).status_code == 404


def test_an_expired_sign_in_link_is_refused():
    result = provision("--org", "Acme", "--owner", "jane@example.com", "--no-api-key")
    SignInLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    path = link_path(result["owner"]["sign_in_link"])
    assert Client().get(path).status_code == 404
    refused = Client().post(path)
    assert refused.status_code == 404 and "_auth_user_id" not in refused.client.session


def test_a_person_signed_in_by_link_sets_a_password_without_an_old_one():
    result = provision("--org", "Acme", "--owner", "jane@example.com", "--no-api-key")
    browser = Client()
    browser.post(link_path(result["owner"]["sign_in_link"]))
    response = browser.post(
        "/account/password/", {"new_password1": "a-long-new-passphrase-9", "new_password2": "a-long-new-passphrase-9"}
    )
    assert response.status_code == 302
    assert get_user_model().objects.get(email="jane@example.com").check_password("a-long-new-passphrase-9")


def test_an_operator_without_a_membership_is_told_how_to_get_one(make_user, as_user):
    operator = as_user(make_user("root", staff=True, is_superuser=True))
    landed = operator.get("/", follow=True)
    assert landed.status_code == 200
    assert b"not a member of any organization" in landed.content
    assert b"provision --org NAME --owner YOUR-EMAIL" in landed.content


def test_key_page_creates_a_scoped_key_and_shows_scopes(owner_client, organization, domain):
    page = owner_client.post(
        f"/o/{organization.pk}/keys/api",
        {"name": "ci", "scopes": ["send", "messages:read"], "allowed_domains": [domain.pk], "allowed_networks": ""},
    )
    assert page.status_code == 201, page.content
    key = ApiKey.objects.get(name="ci")
    assert (key.scopes, key.allowed_domains, key.member_bound) == (["send", "messages:read"], ["acme.example"], True)
    listed = owner_client.get(f"/o/{organization.pk}/keys/").content.decode()
    assert '<span class="badge">send</span> <span class="badge">messages:read</span>' in listed


def test_an_admin_cannot_mint_a_key_beyond_an_admin_and_a_developer_not_at_all(member, as_user, organization):
    developer = as_user(member("developer"))
    assert developer.post(f"/o/{organization.pk}/keys/api", {"name": "x", "scopes": ["send"]}).status_code == 403
    assert not ApiKey.objects.filter(name="x").exists()


def test_audit_page_shows_who_did_what_from_where(member, as_user, organization, domain):
    admin = as_user(member("admin"), REMOTE_ADDR="198.51.100.4")
    admin.post(f"/o/{organization.pk}/keys/api", {"name": "ci", "scopes": ["send"]})
    admin.post(f"/o/{organization.pk}/domains/{domain.pk}/rotate-dkim")
    page = admin.get(f"/o/{organization.pk}/audit/")
    assert page.status_code == 200
    text = page.content.decode()
    for expected in ("api_key.created", "domain.dkim_rotated", "198.51.100.4", "admin", "acme.example"):
        assert expected in text, expected
    only = admin.get(f"/o/{organization.pk}/audit/", {"action": "domain."}).content.decode()
    assert "domain.dkim_rotated" in only and "<code>api_key.created</code>" not in only
    viewer = as_user(member("viewer"))
    assert viewer.get(f"/o/{organization.pk}/audit/").status_code == 403


def test_member_role_changes_are_audited(member, as_user, organization):
    owner = as_user(member("owner"), REMOTE_ADDR="203.0.113.9")
    dev = Membership.objects.get(user=member("developer"))
    owner.post(f"/o/{organization.pk}/members/{dev.pk}/role", {"role": "admin"})
    entry = AuditEntry.objects.get(action="member.role_changed")
    assert (entry.actor, entry.ip, entry.target, entry.changes) == (
        "owner",
        "203.0.113.9",
        "developer",
        {"role": ["developer", "admin"]},
    )
