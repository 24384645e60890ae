"""Verification jobs, their per-address results, and the shared per-MX connection slots of the probe."""

from __future__ import annotations

from django.db import models

from accounts.models import ApiKey, Organization
from sending.models import uuid7


class Result(models.TextChoices):
    DELIVERABLE = "deliverable"
    UNDELIVERABLE = "undeliverable"
    RISKY = "risky"
    UNKNOWN = "unknown"


class VerificationJob(models.Model):
    """One API request: a single address (answered inline, stored completed) or a list checked by a worker."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="verification_jobs")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    # When a worker task was last asked to run it; the sweep asks again once POSTWERK_VERIFY_JOB_LEASE passes.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written by the worker after every finished connection; a stale one means that worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "created_at"], name="verifyjob_org_created"),
            models.Index(fields=["state", "created_at"], name="verifyjob_state_created"),
        ]

    def __str__(self) -> str:
        return f"verification {self.pk} ({self.state}, {self.total})"


class VerificationResult(models.Model):
    job = models.ForeignKey(VerificationJob, on_delete=models.CASCADE, related_name="results")
    position = models.PositiveIntegerField()
    address = models.TextField()  # as the caller gave it
    normalized = models.CharField(max_length=320, blank=True, default="")
    result = models.CharField(max_length=16, choices=Result.choices, blank=True, default="")  # "" until checked
    reasons = models.JSONField(default=list, blank=True)
    checks = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="verifyresult_job_position")]

    def __str__(self) -> str:
        return f"{self.address}: {self.result or 'pending'}"


class ProbeSlot(models.Model):
    """One of the POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX connections the probe may hold open to an MX host.

    Claimed with a conditional UPDATE (free, or its lease expired), so every worker process on every host
    sees the same count; a holder that died frees its slot when the lease runs out.
    """

    host = models.CharField(max_length=255)
    slot = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=32, blank=True, default="")  # "" when free
    # Held: until when the holder may keep it. Free: since when it has been free.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "slot"], name="probeslot_host_slot")]

    def __str__(self) -> str:
        return f"{self.host}#{self.slot} ({self.holder or 'free'})"
