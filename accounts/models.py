"""Organizations, who belongs to them, and the secrets applications authenticate with."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Organization(models.Model):
    class LimitAction(models.TextChoices):
        HOLD = "hold"  # accept (202 / 250) and hold the message until released
        REJECT = "reject"  # refuse (API 429, SMTP 451 4.7.1): the application retries later

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Send limits: empty takes the platform default (POSTWERK_SEND_LIMIT_HOURLY / _DAILY); 0 means none.
    hourly_limit = models.PositiveIntegerField(null=True, blank=True)
    daily_limit = models.PositiveIntegerField(null=True, blank=True)
    # What happens to new mail while paused or over a limit; empty takes POSTWERK_LIMIT_ACTION.
    limit_action = models.CharField(max_length=6, choices=LimitAction.choices, blank=True)
    # Every member must sign in with a second factor; one without a device is sent to enrolment first.
    require_two_factor = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        DEVELOPER = "developer"
        VIEWER = "viewer"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.DEVELOPER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


def full_scopes() -> list[str]:
    """Keys made before scopes existed, and keys an operator makes with `provision`, may do everything."""
    return ["full"]


class ApiKey(models.Model):
    """An API key. Only a SHA-256 of the secret is kept: 256 random bits need no slow hash.

    What it may do is its `scopes` (accounts.scopes), narrowed by its optional limits (sender domains, streams,
    client networks, expiry) and, for a key a member made, by that member's current role (accounts.scopes)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part shown in lists")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Requests per second this key may make; empty takes POSTWERK_API_RATE_LIMIT.
    rate_limit = models.PositiveIntegerField(null=True, blank=True)
    # Mail sent with a sandbox key runs the whole accept path and is stored, but delivery hands it to the built-in
    # capture (sending.delivery.sandbox), never to an MX. Set at creation, never changed.
    sandbox = models.BooleanField(default=False)
    scopes = models.JSONField(default=full_scopes, help_text="accounts.scopes.Scope values; 'full' is every one")
    # Sender domain names (the organization's Domain rows' names) and stream names; empty means any. Names, not
    # foreign keys: a deleted domain must not silently widen a key to "any domain".
    allowed_domains = models.JSONField(default=list, blank=True)
    allowed_streams = models.JSONField(default=list, blank=True)
    # CIDR strings; empty means any client address.
    allowed_networks = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The member who made it: the key never has more rights than that member's role has now. A key made by an
    # operator (provision, the admin) or before roles applied to keys has none, and `member_bound` False.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    member_bound = models.BooleanField(default=False)
    # Rotation: the secret before the last rotation keeps working until `previous_valid_until`.
    previous_key_hash = models.CharField(max_length=64, blank=True)
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    # An AWS-style access key pair for the SES-compatible API (sending.compat.ses), acting as this key: same
    # organization, scopes, limits and revocation. SigV4 verification recomputes an HMAC with the secret, so it
    # is kept encrypted (mail.crypto), not hashed; both empty when the key has none.
    ses_access_key_id = models.CharField(max_length=20, unique=True, null=True, blank=True)
    ses_secret_encrypted = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="apikey_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SmtpCredential(models.Model):
    """A username and password an application uses for SMTP submission. Only a hash of the password is kept."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="smtp_credentials")
    name = models.CharField(max_length=200)
    username = models.CharField(max_length=64, unique=True)
    password_hash = models.CharField(max_length=64)
    # Empty means every domain of the organization.
    allowed_domains = models.ManyToManyField("sending.Domain", blank=True, related_name="+")
    # CIDR strings; empty means any source address.
    allowed_networks = models.JSONField(default=list, blank=True)
    # The message stream (its name) this credential's mail goes on, unless a message names one in its
    # X-Postwerk-Stream header; empty: the organization's `transactional` stream.
    stream = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # As ApiKey.sandbox: its mail goes to the built-in capture, never to an MX.
    sandbox = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="smtpcredential_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.username})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Invitation(models.Model):
    """An invitation by email to join an organization with a role. Only a hash of the link's token is kept."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Membership.Role.choices, default=Membership.Role.DEVELOPER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.role})"


class AuditEntry(models.Model):
    """One change a person or a key made to an organization: who, when, from where, what and how it changed.
    Written only by accounts.audit.audit_record, from the services that make the change."""

    class ActorType(models.TextChoices):
        USER = "user"  # a person in the dashboard or the admin
        API_KEY = "api_key"
        SYSTEM = "system"  # a management command or a task: an operator at the console, or Postwerk itself

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_entries")
    created_at = models.DateTimeField(auto_now_add=True)
    actor_type = models.CharField(max_length=8, choices=ActorType.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # What the actor was called then (a username, "key name (prefix)", a command): kept when the row it names goes.
    actor = models.CharField(max_length=200)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, help_text="e.g. api_key.created, domain.dkim_rotated")
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target = models.CharField(max_length=300, blank=True, help_text="the target's name at the time")
    # {"field": [before, after]} for updates; the new object's fields for a creation; counts for bulk actions.
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-id"], name="audit_org_newest"),
            models.Index(fields=["organization", "action", "-id"], name="audit_org_action"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"


class SignInLink(models.Model):
    """A one-time sign-in link (manage.py provision --owner): used once, expiring, only a hash of it kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sign-in link for {self.user} ({'used' if self.used_at else 'unused'})"
