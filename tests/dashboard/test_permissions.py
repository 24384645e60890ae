"""Who may do what: every page and action for every role, another organization's ids, CSRF and headers."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Membership
from sending.models import Domain, Message, Suppression
from tests.dashboard.conftest import send

pytestmark = pytest.mark.django_db

ROLES = ["owner", "admin", "developer", "viewer"]
EVERYONE = set(ROLES)
SENDING = {"owner", "admin", "developer"}
ADMINS = {"owner", "admin"}

# (method, url name, URL args from the fixture's objects, POST data, roles allowed)
ACTIONS = [
    ("get", "overview", [], None, EVERYONE),
    ("get", "domains", [], None, EVERYONE),
    ("get", "domain", ["domain"], None, EVERYONE),
    ("post", "domain_add", [], {"name": "added.example"}, SENDING),
    ("post", "domain_check", ["domain"], {}, SENDING),
    ("post", "domain_rotate", ["domain"], {"algorithm": "rsa"}, SENDING),
    ("post", "domain_delete", ["spare_domain"], {}, ADMINS),
    ("get", "domain_setup", ["domain"], None, EVERYONE),
    ("post", "domain_send_test", ["domain"], {"local_part": "test", "to": "jane@dest.example"}, SENDING),
    ("get", "activity", [], None, EVERYONE),
    ("get", "activity_feed", [], None, EVERYONE),
    ("get", "messages", [], None, EVERYONE),
    ("get", "message", ["message"], None, EVERYONE),
    ("get", "message_source", ["message"], None, EVERYONE),
    ("get", "message_html", ["message"], None, EVERYONE),
    ("get", "suppressions", [], None, EVERYONE),
    ("get", "suppressions_export", [], None, EVERYONE),
    ("post", "suppression_add", [], {"address": "x@dest.example"}, SENDING),
    ("post", "suppression_remove", [], {"address": "held@dest.example"}, SENDING),
    ("post", "suppressions_import", [], {"text": "y@dest.example"}, SENDING),
    ("get", "keys", [], None, ADMINS),
    ("post", "api_key_create", [], {"name": "new", "scopes": ["send"]}, ADMINS),
    ("post", "api_key_revoke", ["api_key"], {}, ADMINS),
    ("post", "smtp_credential_create", [], {"name": "new"}, ADMINS),
    ("post", "smtp_credential_revoke", ["credential"], {}, ADMINS),
    ("get", "members", [], None, EVERYONE),
    ("post", "member_add", [], {"identifier": "fresh@people.example", "role": "viewer"}, ADMINS),
    ("post", "member_role", ["bystander"], {"role": "developer"}, ADMINS),
    ("post", "member_remove", ["bystander"], {}, ADMINS),
    ("post", "member_invite", [], {"email": "new@people.example", "role": "viewer"}, ADMINS),
    ("post", "invitation_resend", ["invitation"], {}, ADMINS),
    ("post", "invitation_revoke", ["invitation"], {}, ADMINS),
    ("get", "held", [], None, EVERYONE),
    ("post", "held_release", [], {"confirm": "on"}, ADMINS),
    ("post", "held_cancel", [], {}, ADMINS),
    ("get", "reputation", [], None, EVERYONE),
    ("post", "reputation_thresholds", ["reputation"], {}, ADMINS),
    ("get", "streams", [], None, EVERYONE),
    ("post", "stream_add", [], {"name": "letters"}, ADMINS),
    ("post", "scheduled_cancel", ["message"], {}, SENDING),
]
# What an allowed POST answers when it is not the usual redirect after success: 201 for a page created to show
# a secret or link once, 200 for a page that asks for more (held_cancel without its confirmation) or shows a link.
POST_ANSWERS = {
    "api_key_create": 201,
    "smtp_credential_create": 201,
    "member_add": 201,
    "member_invite": 201,
    "invitation_resend": 200,
    "held_cancel": 200,
}


@pytest.fixture
def objects(organization, api, domain, make_user) -> dict:  # type: ignore[no-untyped-def]
    from accounts.invitations import invitation_create
    from accounts.services import api_key_create, smtp_credential_create
    from sending.domains.service import domain_get_or_create
    from sending.feedback.suppressions import suppression_add

    sent = send(api)
    spare, _ = domain_get_or_create(organization=organization, name="spare.example")
    suppression_add(organization_id=organization.pk, address="held@dest.example", reason="manual")
    api_key, _ = api_key_create(organization=organization, name="existing")
    credential, _ = smtp_credential_create(organization=organization, name="existing")
    bystander = Membership.objects.create(organization=organization, user=make_user("bystander"), role="viewer")
    inviter = Membership(organization=organization, user=bystander.user, role="owner")
    invitation = invitation_create(actor=inviter, email="invited@people.example", role="viewer", link=str).invitation
    from sending.reputation.rates import reputation_for_scope

    return {
        "reputation": reputation_for_scope(organization.pk, "api_key", api_key.pk).pk,
        "invitation": invitation.pk,
        "domain": domain.pk,
        "spare_domain": spare.pk,
        "message": sent["id"],
        "api_key": api_key.pk,
        "credential": credential.pk,
        "bystander": bystander.pk,
    }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "name", "args", "data", "allowed"), ACTIONS, ids=[a[1] for a in ACTIONS])
def test_role_permissions(role, method, name, args, data, allowed, member, as_user, organization, objects):
    client = as_user(member(role, username=f"the-{role}"))
    path = reverse(f"dashboard:{name}", args=[organization.pk, *(objects[a] for a in args)])
    response = getattr(client, method)(path, data) if method == "post" else client.get(path)
    if role in allowed:
        expected = 200 if method == "get" else POST_ANSWERS.get(name, 302)
        assert response.status_code == expected, (role, name, response.status_code)
    else:
        assert response.status_code == 403, (role, name, response.status_code)
        assert b"Not allowed" in response.content


def test_refused_actions_change_nothing(member, as_user, organization, objects):
    viewer = as_user(member("viewer", username="v"))
    viewer.post(reverse("dashboard:domain_add", args=[organization.pk]), {"name": "sneaky.example"})
    viewer.post(reverse("dashboard:suppression_add", args=[organization.pk]), {"address": "z@dest.example"})
    assert not Domain.objects.filter(name="sneaky.example").exists()
    assert not Suppression.objects.filter(address="z@dest.example").exists()


def test_navigation_hides_what_the_role_cannot_use(member, as_user, organization):
    developer = as_user(member("developer", username="d")).get(reverse("dashboard:overview", args=[organization.pk]))
    assert b"API keys &amp; SMTP" not in developer.content
    viewer = as_user(member("viewer", username="v")).get(reverse("dashboard:domains", args=[organization.pk]))
    assert b"Add a domain" not in viewer.content and b"Check DNS now" not in viewer.content
    admin = as_user(member("admin", username="a")).get(reverse("dashboard:overview", args=[organization.pk]))
    assert b"API keys &amp; SMTP" in admin.content


@pytest.mark.parametrize(
    ("method", "name", "key"),
    [
        ("get", "domain", "domain"),
        ("post", "domain_check", "domain"),
        ("post", "domain_rotate", "domain"),
        ("post", "domain_delete", "domain"),
        ("get", "domain_setup", "domain"),
        ("post", "domain_send_test", "domain"),
        ("get", "message", "message"),
        ("get", "message_source", "message"),
        ("get", "message_html", "message"),
        ("post", "api_key_revoke", "api_key"),
        ("post", "smtp_credential_revoke", "credential"),
        ("post", "member_role", "membership"),
        ("post", "member_remove", "membership"),
        ("post", "reputation_resume", "reputation"),
        ("post", "reputation_thresholds", "reputation"),
    ],
)
def test_another_organizations_ids_are_not_found(owner_client, organization, other, method, name, key):
    if key == "reputation":
        from sending.reputation.rates import reputations_for

        other["reputation"] = reputations_for(other["org"].pk)[0]
    obj = other[key]
    path = reverse(f"dashboard:{name}", args=[organization.pk, obj.pk])
    response = getattr(owner_client, method)(path, {"role": "viewer"} if method == "post" else None)
    assert response.status_code == 404
    assert b"Not found" in response.content


def test_another_organizations_objects_are_untouched(owner_client, organization, other):
    owner_client.post(reverse("dashboard:domain_delete", args=[organization.pk, other["domain"].pk]))
    owner_client.post(reverse("dashboard:api_key_revoke", args=[organization.pk, other["api_key"].pk]))
    owner_client.post(
        reverse("dashboard:suppression_remove", args=[organization.pk]), {"address": "held@globex.example"}
    )
    owner_client.post(reverse("dashboard:member_remove", args=[organization.pk, other["membership"].pk]))
    assert Domain.objects.filter(pk=other["domain"].pk).exists()
    other["api_key"].refresh_from_db()
    assert other["api_key"].revoked_at is None
    assert Suppression.objects.get(address="held@globex.example").removed_at is None
    assert Membership.objects.filter(pk=other["membership"].pk).exists()


def test_another_organizations_lists_do_not_leak(owner_client, organization, other):
    assert not owner_client.get(reverse("dashboard:messages", args=[organization.pk])).context["rows"]
    assert b"globex" not in owner_client.get(reverse("dashboard:domains", args=[organization.pk])).content
    assert b"globex" not in owner_client.get(reverse("dashboard:suppressions", args=[organization.pk])).content
    assert b"globex" not in owner_client.get(reverse("dashboard:keys", args=[organization.pk])).content
    assert b"globex" not in owner_client.get(reverse("dashboard:members", args=[organization.pk])).content
    assert b"globex" not in owner_client.get(reverse("dashboard:suppressions_export", args=[organization.pk])).content


@pytest.mark.parametrize("name", ["overview", "domains", "messages", "suppressions", "keys", "members", "reputation"])
def test_an_organization_one_is_not_a_member_of_is_not_found(owner_client, other, name):
    assert owner_client.get(reverse(f"dashboard:{name}", args=[other["org"].pk])).status_code == 404


def test_staff_without_membership_see_no_organization_pages(make_user, as_user, organization):
    staff = as_user(make_user("operator", staff=True))
    assert staff.get(reverse("dashboard:overview", args=[organization.pk])).status_code == 404


def test_every_form_needs_its_csrf_token(owner, organization):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("dashboard:domain_add", args=[organization.pk]), {"name": "csrf.example"})
    assert response.status_code == 403 and b"This form has expired" in response.content
    assert not Domain.objects.filter(name="csrf.example").exists()
    page = client.get(reverse("dashboard:domains", args=[organization.pk])).content.decode()
    assert page.count('name="csrfmiddlewaretoken"') == page.count('<form method="post"')


def test_pages_carry_security_headers(owner_client, organization):
    response = owner_client.get(reverse("dashboard:overview", args=[organization.pk]))
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]
    assert "camera=()" in response["Permissions-Policy"]
    login = Client().get(reverse("dashboard:login"))
    assert "Content-Security-Policy" in login


def test_get_only_pages_refuse_other_methods(owner_client, organization, objects):
    assert owner_client.post(reverse("dashboard:overview", args=[organization.pk])).status_code == 405
    assert (
        owner_client.get(reverse("dashboard:domain_check", args=[organization.pk, objects["domain"]])).status_code
        == 405
    )


def test_unknown_page_renders_the_friendly_404(owner_client):
    response = owner_client.get("/no/such/page")
    assert response.status_code == 404 and b"Not found" in response.content


def test_message_of_another_org_not_in_search_by_id(owner_client, organization, other):
    message: Message = other["message"]
    rows = owner_client.get(reverse("dashboard:messages", args=[organization.pk]), {"message_id": str(message.pk)})
    assert not rows.context["rows"]
