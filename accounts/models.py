"""Organizations, who belongs to them, and the secrets applications authenticate with."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

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


class ApiKey(models.Model):
    """A send-API key. Only a SHA-256 of the secret is kept: 256 random bits need no slow hash."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part shown in lists")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

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
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="smtpcredential_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.username})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
