"""Invitations by email: only owners and admins invite (an admin never an owner); the emailed link works once,
for seven days, after a log-in or a sign-up; resend replaces the link, revoke kills it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.invitations import InvitationError, invitation_accept, invitation_create, invitation_for_token
from accounts.models import Invitation, Membership
from accounts.secrets import hash_secret
from tests.dashboard.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def invite(client, organization, email="new@people.example", role="developer"):  # type: ignore[no-untyped-def]
    return client.post(reverse("dashboard:member_invite", args=[organization.pk]), {"email": email, "role": role})


def emailed_link() -> str:
    return re.search(r"http://testserver(/invite/[^/\s]+/)", mail.outbox[-1].body).group(1)


def test_invite_emails_a_link_and_stores_only_its_hash(owner_client, organization):
    response = invite(owner_client, organization, email="New@People.example")
    assert response.status_code == 201
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new@people.example"] and "Acme" in message.subject and "developer" in message.body
    link = emailed_link()
    token = link.split("/")[2]
    invitation = Invitation.objects.get()
    assert invitation.token_hash == hash_secret(token) and token not in invitation.token_hash
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    assert invitation.invited_by.username == "owner"
    assert link.encode() in response.content  # shown once to the inviter too
    members = owner_client.get(reverse("dashboard:members", args=[organization.pk]))
    assert b"Pending invitations" in members.content and token.encode() not in members.content


def test_an_existing_user_logs_in_and_joins_with_the_role(owner_client, organization, make_user):
    invite(owner_client, organization, role="viewer")
    link = emailed_link()
    make_user("jane")
    visitor = Client()
    page = visitor.get(link)
    assert page.status_code == 200 and b"Join Acme" in page.content and b"viewer" in page.content
    login = visitor.post(
        f"{reverse('dashboard:login')}?next={link}", {"username": "jane", "password": PASSWORD, "next": link}
    )
    assert login.status_code == 302 and login["Location"] == link
    joined = visitor.post(link)
    assert joined.status_code == 302 and joined["Location"] == reverse("dashboard:overview", args=[organization.pk])
    assert Membership.objects.get(user__username="jane").role == "viewer"
    invitation = Invitation.objects.get()
    assert invitation.accepted_at and invitation.accepted_by.username == "jane"
    # Used once: the link is dead now.
    assert Client().get(link).status_code == 404


def test_a_new_person_signs_up_from_the_link(owner_client, organization):
    invite(owner_client, organization, email="fresh@people.example", role="developer")
    link = emailed_link()
    visitor = Client()
    weak = visitor.post(f"{link}signup", {"username": "fresh", "password1": "abc", "password2": "abc"})
    assert weak.status_code == 400 and not Membership.objects.filter(user__username="fresh").exists()
    good = "a long enough passphrase 7"
    created = visitor.post(f"{link}signup", {"username": "fresh", "password1": good, "password2": good})
    assert created.status_code == 302
    membership = Membership.objects.get(user__username="fresh")
    assert membership.role == "developer" and membership.user.email == "fresh@people.example"
    assert visitor.get(reverse("dashboard:overview", args=[organization.pk])).status_code == 200


def test_resend_replaces_the_link_and_revoke_kills_it(owner_client, organization):
    invite(owner_client, organization)
    first = emailed_link()
    invitation = Invitation.objects.get()
    resent = owner_client.post(reverse("dashboard:invitation_resend", args=[organization.pk, invitation.pk]))
    assert resent.status_code == 200 and len(mail.outbox) == 2
    second = emailed_link()
    assert first != second
    assert Client().get(first).status_code == 404 and Client().get(second).status_code == 200
    owner_client.post(reverse("dashboard:invitation_revoke", args=[organization.pk, invitation.pk]))
    assert Client().get(second).status_code == 404


def test_an_expired_link_does_not_work(owner_client, organization, make_user):
    invite(owner_client, organization)
    link = emailed_link()
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    page = Client().get(link)
    assert page.status_code == 404 and b"not valid" in page.content
    user = make_user("late")
    with pytest.raises(InvitationError):
        invitation_accept(token=link.split("/")[2], user=user)
    assert not Membership.objects.filter(user=user).exists()


def test_an_admin_cannot_invite_an_owner_and_others_cannot_invite(member, as_user, organization):
    admin = as_user(member("admin"))
    refused = invite(admin, organization, role="owner")
    assert refused.status_code == 400 and b"Only an owner can invite an owner" in refused.content
    assert invite(admin, organization, role="admin").status_code == 201
    for role in ("developer", "viewer"):
        assert invite(as_user(member(role)), organization, email=f"{role}@x.example").status_code == 403
    assert list(Invitation.objects.values_list("role", flat=True)) == ["admin"]
    viewer_actor = Membership.objects.get(user__username="viewer")
    with pytest.raises(InvitationError):
        invitation_create(actor=viewer_actor, email="a@b.example", role="viewer", link=str)


def test_bad_addresses_and_existing_members_are_refused(owner_client, organization, member):
    member("developer")  # developer@people.example
    assert invite(owner_client, organization, email="not-an-address").status_code == 400
    taken = invite(owner_client, organization, email="developer@people.example")
    assert taken.status_code == 400 and b"already a member" in taken.content
    assert not mail.outbox


def test_another_organizations_invitation_cannot_be_resent_or_revoked(owner_client, organization, other):
    sent = invitation_create(actor=other["membership"], email="g@globex.example", role="viewer", link=str)
    for name in ("invitation_resend", "invitation_revoke"):
        response = owner_client.post(reverse(f"dashboard:{name}", args=[organization.pk, sent.invitation.pk]))
        assert response.status_code == 404
    assert invitation_for_token(sent.link) is not None


def test_a_failing_mail_server_keeps_the_invitation_and_shows_the_link(owner_client, organization, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2  # nothing listens
    response = invite(owner_client, organization)
    assert response.status_code == 201
    assert b"could not be sent" in response.content and b"/invite/" in response.content
    assert Invitation.objects.filter(accepted_at__isnull=True).count() == 1
