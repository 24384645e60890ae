"""What Postwerk stores: sender domains and keys, messages, per-recipient delivery state and events."""

from __future__ import annotations

import os
import secrets
import time
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import ApiKey, Organization, SmtpCredential


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 §5.7: 48-bit Unix milliseconds, version, 74 random bits), so new rows land
    at the end of the primary-key index. Random bits within a millisecond: ids stay unguessable and never run
    ahead of the clock (no counter), and ordering within one millisecond does not matter to us."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122/9562 variant
    return uuid.UUID(int=value)


def verification_token() -> str:
    return secrets.token_urlsafe(24)


class Domain(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="domains")
    # Stored as ASCII (IDNA) lower case; one organization owns a domain.
    name = models.CharField(max_length=253, unique=True)
    allow_subdomains = models.BooleanField(
        default=False, help_text="Allow From addresses at any subdomain of this domain."
    )
    verification_token = models.CharField(max_length=64, default=verification_token, editable=False)
    return_path_subdomain = models.CharField(max_length=63, default="", blank=True)
    # What the last DNS checks proved. Sticky against one failed lookup: only a definite answer changes them.
    ownership_verified_at = models.DateTimeField(null=True, blank=True)
    # Ownership proven and a DKIM key live in DNS: from then on the domain may send.
    verified_at = models.DateTimeField(null=True, blank=True)
    dkim_ok = models.BooleanField(default=False)
    return_path_ok = models.BooleanField(default=False)
    # SPF passes for the return-path host: what DMARC's SPF alignment looks at.
    spf_ok = models.BooleanField(default=False)
    # The parsed DMARC policy that applies to mail from this domain ({} when none is published).
    dmarc = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    # Open and click tracking and unsubscribe headers, all off by default (sending.feedback.tracking).
    track_opens = models.BooleanField(default=False)
    track_clicks = models.BooleanField(default=False)
    # Messages carrying one of these tags get List-Unsubscribe headers (RFC 2369, RFC 8058); "*" means all.
    unsubscribe_tags = models.JSONField(default=list, blank=True)
    tracking_subdomain = models.CharField(max_length=63, default="", blank=True)
    # The tracking subdomain's CNAME points at POSTWERK_TRACKING_HOST: links use the domain's own host.
    tracking_host_ok = models.BooleanField(default=False)
    # Inbound mail (sending.inbound): received for the domain itself or for one subdomain (`inbound.acme.example`),
    # routed by the organization's InboundRoutes. inbound_mx_ok: the MX records point at the platform's MX hosts.
    inbound_enabled = models.BooleanField(default=False)
    inbound_subdomain = models.CharField(max_length=63, default="", blank=True)
    inbound_mx_ok = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["next_check_at"], name="domain_next_check")]

    def __str__(self) -> str:
        return self.name

    @property
    def return_path_host(self) -> str:
        return f"{self.return_path_subdomain or settings.POSTWERK_RETURN_PATH_PREFIX}.{self.name}"

    @property
    def tracking_host(self) -> str:
        return f"{self.tracking_subdomain or settings.POSTWERK_TRACKING_PREFIX}.{self.name}"

    @property
    def inbound_host(self) -> str:
        """The name inbound mail is addressed to: the domain, or its inbound subdomain."""
        return f"{self.inbound_subdomain}.{self.name}" if self.inbound_subdomain else self.name


class Stream(models.Model):
    """A kind of mail an organization sends, kept apart from the others (Postmark's message streams, SES's
    configuration sets). Every organization has its `transactional` stream (created with the organization); it may
    add `broadcast` streams. Each stream has its own suppression scope, reputation scope, send limits, tracking
    defaults and webhooks filter, and its mail its own delivery queues (sending.streams)."""

    class Kind(models.TextChoices):
        TRANSACTIONAL = "transactional"
        BROADCAST = "broadcast"  # newsletters, announcements: must carry one-click List-Unsubscribe (RFC 8058)

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="streams")
    # What `stream` names on the API and in X-Postwerk-Stream: lower-case letters, digits, `-` and `_`.
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.CharField(max_length=200, blank=True)
    # Tracking defaults for the stream's mail; empty takes the sender domain's setting.
    track_opens = models.BooleanField(null=True, blank=True)
    track_clicks = models.BooleanField(null=True, blank=True)
    # Send limits of this stream alone (messages per UTC hour and day); empty: only the organization's apply.
    hourly_limit = models.PositiveIntegerField(null=True, blank=True)
    daily_limit = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="stream_org_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def is_broadcast(self) -> bool:
        return self.kind == self.Kind.BROADCAST


class DkimKey(models.Model):
    class Algorithm(models.TextChoices):
        RSA = "rsa"
        ED25519 = "ed25519"

    class State(models.TextChoices):
        # A key signs only once its record is seen in DNS; a newer verified key of the same algorithm
        # retires the older one, whose record the owner may then remove.
        PENDING = "pending"
        ACTIVE = "active"
        RETIRED = "retired"

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=16, choices=Algorithm.choices, default=Algorithm.RSA)
    # Fernet token of the PEM private key (POSTWERK_ENCRYPTION_KEY); never stored in the clear.
    private_key_encrypted = models.TextField()
    # Base64 of the DER public key: the p= tag of the DNS record.
    public_key = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    verified_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["domain", "selector"], name="dkim_selector_unique")]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.name}"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.name}"

    @property
    def record_value(self) -> str:
        return f"v=DKIM1; k={self.algorithm}; p={self.public_key}"


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # Not indexed alone: message_org_created starts with it. Every index is paid for on each accepted message.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="messages", db_index=False)
    # Kept when the domain is deleted (after its mail has left), so history survives.
    domain = models.ForeignKey(Domain, on_delete=models.SET_NULL, null=True, related_name="messages")
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )  # partial index in Meta: a message has a key or a credential, never both
    smtp_credential = models.ForeignKey(
        SmtpCredential, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    message_id = models.CharField(max_length=998, help_text="The Message-ID header")
    mail_from = models.CharField(max_length=320, help_text="The From address")
    subject = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # The message as built, before DKIM: signing happens once per delivery batch in the worker.
    raw = models.BinaryField()
    size = models.PositiveIntegerField()
    smtputf8 = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    # Sent with a sandbox key or credential: delivered to the built-in capture only (sending.delivery.sandbox), and
    # its outcomes never count towards reputation. Copied from the key at accept time.
    sandbox = models.BooleanField(default=False)
    # The stream it was sent on (empty only for mail accepted before streams existed: the transactional one).
    stream = models.ForeignKey(Stream, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # Scheduled sending: when it may go (its recipients wait `scheduled` until then); empty: at once.
    send_at = models.DateTimeField(null=True, blank=True)
    # The delivery deadline (`deliver_within` seconds after it may go): retries stop there and the recipient
    # becomes `expired`. Empty: POSTWERK_MAX_DELIVERY_AGE, then bounced as before.
    deliver_by = models.DateTimeField(null=True, blank=True)
    priority = models.CharField(max_length=6, default="normal", blank=True)  # "normal" | "high"
    # This message's own open/click tracking (the send API's `track_opens`/`track_clicks`, Postmark's TrackOpens/
    # TrackLinks); empty: the stream's default, else the domain's (sending.feedback.tracking.tracked_copies).
    track_opens = models.BooleanField(null=True, blank=True)
    track_clicks = models.BooleanField(null=True, blank=True)
    # The template version it was rendered from (sent with `template`); empty for mail without one, and once the
    # template is deleted. Not indexed alone: the partial index covers the few templated messages' deletes.
    template_version = models.ForeignKey(
        "TemplateVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="message_org_created"),
            models.Index(
                fields=["template_version"],
                name="message_template_version",
                condition=models.Q(template_version__isnull=False),
            ),
            models.Index(fields=["api_key"], name="message_api_key", condition=models.Q(api_key__isnull=False)),
            models.Index(
                fields=["smtp_credential"],
                name="message_smtp_credential",
                condition=models.Q(smtp_credential__isnull=False),
            ),
            # The sweep's deadline check starts from the few messages that have one.
            models.Index(
                fields=["deliver_by"], name="message_deliver_by", condition=models.Q(deliver_by__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} from {self.mail_from}"


class MessageTag(models.Model):
    """One row per tag, so filtering by tag is an indexed lookup on every database."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tag_rows")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)

    class Meta:
        indexes = [models.Index(fields=["organization", "name"], name="tag_org_name")]

    def __str__(self) -> str:
        return self.name


class RecipientState(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # on the organization's suppression list when sent: never attempted
    HELD = "held"  # accepted while its sender was paused or over its send limit: waits for release or cancel
    CANCELLED = "cancelled"  # held or scheduled, then cancelled (by a person, or by expiry): never attempted
    SCHEDULED = "scheduled"  # sent with `send_at`: waits until then (the sweep queues it), or is cancelled
    EXPIRED = "expired"  # its delivery deadline (`deliver_within`) passed before it could be delivered


# States delivery never takes a recipient out of (an asynchronous DSN may still turn `delivered` into `bounced`).
FINAL_STATES = (
    RecipientState.DELIVERED,
    RecipientState.BOUNCED,
    RecipientState.FAILED,
    RecipientState.SUPPRESSED,
    RecipientState.CANCELLED,
    RecipientState.EXPIRED,
)


class Recipient(models.Model):
    class Kind(models.TextChoices):
        TO = "to"
        CC = "cc"
        BCC = "bcc"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients")
    # Not indexed alone: recipient_org_address starts with it.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    address = models.CharField(max_length=320)
    # The destination: ASCII (IDNA) lower-case domain, the unit of MX lookup and connection reuse.
    domain = models.CharField(max_length=253)
    kind = models.CharField(max_length=3, choices=Kind.choices, default=Kind.TO)
    state = models.CharField(max_length=16, choices=RecipientState.choices, default=RecipientState.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    # For queued/deferred: when the sweep may (re)enqueue it. Bumped by a lease whenever it is enqueued. Empty
    # once delivery has an outcome that ends it (delivered, bounced, failed): no attempt is coming.
    next_attempt_at = models.DateTimeField(default=timezone.now, null=True, blank=True)
    sending_since = models.DateTimeField(null=True, blank=True)
    # Set by the claim that moved the row to `sending`: the claiming worker's WorkerLease, which the sweep checks
    # before re-queueing the row (a claim made outside a worker lease gets a token of its own).
    claim_token = models.UUIDField(null=True, blank=True)
    last_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_enhanced = models.CharField(max_length=16, blank=True)
    last_text = models.TextField(blank=True)
    mx_host = models.CharField(max_length=253, blank=True)
    tls = models.BooleanField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # How many events this delivery has had: the last one's `sequence`, so receivers can order them.
    event_seq = models.PositiveIntegerField(default=0)
    # The first open by a person, and by a machine (a privacy proxy fetching images): each is one event.
    opened_at = models.DateTimeField(null=True, blank=True)
    machine_opened_at = models.DateTimeField(null=True, blank=True)
    # The first click: later clicks are events too, but the unique click count (sending.stats) counts this one.
    clicked_at = models.DateTimeField(null=True, blank=True)
    # Reputation reads these: when the delivery reached its outcome (delivered or bounced), whether a bounce was
    # hard or soft, and when its receiver complained.
    finished_at = models.DateTimeField(null=True, blank=True)
    bounce_kind = models.CharField(max_length=4, blank=True)  # "hard" | "soft" | ""
    complained_at = models.DateTimeField(null=True, blank=True)
    # Why and since when it is held (`reputation_paused`, `send_limit`, ...), with the scope that caused it.
    held_reason = models.CharField(max_length=40, blank=True)
    held_at = models.DateTimeField(null=True, blank=True)
    # The source address of the last attempt ("" = the host's default address): per-IP reputation reads it.
    sending_ip = models.CharField(max_length=45, blank=True)
    # Its delivery lane (sending.streams.lanes): "" transactional, "high" transactional with priority high,
    # "broadcast", "broadcast-high". Each lane has its own Celery queue and a task drains only its own lane, so
    # a broadcast backlog never stands in front of transactional mail.
    lane = models.CharField(max_length=16, blank=True, default="")
    priority = models.PositiveSmallIntegerField(default=0)  # 1: priority high, claimed before 0 of its lane

    class Meta:
        indexes = [
            # Only the rows still on their way: a delivered or bounced recipient leaves this index for good.
            models.Index(
                fields=["state", "next_attempt_at"],
                name="recipient_due",
                condition=models.Q(state__in=["queued", "deferred", "sending"]),
            ),
            # What a delivery task drains: its destination's queued recipients, oldest first
            # (sending.delivery.claiming).
            models.Index(
                fields=["domain", "lane", "-priority", "created_at"],
                name="recipient_queued_lane",
                condition=models.Q(state="queued"),
            ),
            # Scheduled mail, by when it may go (the sweep releases it).
            models.Index(fields=["next_attempt_at"], name="recipient_scheduled", condition=models.Q(state="scheduled")),
            models.Index(fields=["organization", "address"], name="recipient_org_address"),
            models.Index(
                fields=["organization", "-finished_at"],
                name="recipient_org_finished",
                condition=models.Q(finished_at__isnull=False),
            ),
            models.Index(
                fields=["organization", "held_at"],
                name="recipient_org_held",
                condition=models.Q(state="held"),
            ),
            # Per-IP reputation (sending.reputation.ip_reputation); only mail sent from a pool's address.
            models.Index(
                fields=["sending_ip", "-finished_at"],
                name="recipient_ip_finished",
                condition=models.Q(finished_at__isnull=False) & ~models.Q(sending_ip=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.state})"


class EventType(models.TextChoices):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"
    HELD = "held"
    RELEASED = "released"
    CANCELLED = "cancelled"
    SCHEDULED = "scheduled"
    EXPIRED = "expired"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    DOMAIN_VERIFIED = "domain.verified"
    DOMAIN_DNS_BROKEN = "domain.dns_broken"
    DOMAIN_DNS_FIXED = "domain.dns_fixed"
    DOMAIN_DNS_CHANGED = "domain.dns_changed"
    DKIM_KEY_ACTIVATED = "domain.dkim_key_activated"
    REPUTATION_OK = "reputation.ok"
    REPUTATION_WARNING = "reputation.warning"
    REPUTATION_PAUSED = "reputation.paused"
    REPUTATION_RESUMED = "reputation.resumed"
    SEND_LIMIT_WARNING = "send_limit.warning"
    SEND_LIMIT_REACHED = "send_limit.reached"
    BLOCKLIST_LISTED = "blocklist.listed"
    BLOCKLIST_DELISTED = "blocklist.delisted"
    WEBHOOK_DISABLED = "webhook.disabled"
    IP_SUSPENDED = "ip.suspended"
    IP_SLOWED = "ip.slowed"
    IP_REPUTATION_OK = "ip.reputation_ok"
    IP_REPUTATION_WARNING = "ip.reputation_warning"
    IP_REPUTATION_PAUSED = "ip.reputation_paused"
    IP_REPUTATION_RESUMED = "ip.reputation_resumed"


class Event(models.Model):
    # Three to four events per recipient: each index here is paid for that often. The organization's are
    # composite (Meta); the domain's only holds the domain events.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="events", db_index=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    domain = models.ForeignKey(
        Domain, on_delete=models.SET_NULL, null=True, blank=True, related_name="events", db_index=False
    )
    type = models.CharField(max_length=40, choices=EventType.choices)
    created_at = models.DateTimeField(default=timezone.now)
    details = models.JSONField(default=dict, blank=True)
    # The recipient's event count at this event (1 for `queued`), so receivers can order a delivery's events.
    sequence = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="event_org_created"),
            models.Index(fields=["domain"], name="event_domain", condition=models.Q(domain__isnull=False)),
            # The events API pages by id within an organization.
            models.Index(fields=["organization", "-id"], name="event_org_id"),
        ]

    def __str__(self) -> str:
        return f"{self.type} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class Suppression(models.Model):
    """An address the organization does not mail. Removing one keeps the row (who, when) for the record."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce"
        SOFT_BOUNCE = "soft_bounce"  # repeated soft bounces within the window
        COMPLAINT = "complaint"
        MANUAL = "manual"
        UNSUBSCRIBE = "unsubscribe"  # the recipient's one-click unsubscribe (RFC 8058)

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="suppressions")
    address = models.CharField(max_length=320, help_text="Lower case")
    # The stream it applies to (an unsubscribe from a newsletter); empty: every stream (a hard bounce).
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    # The bounce reason, status and diagnostic, or a note for manual entries.
    details = models.JSONField(default=dict, blank=True)
    source_message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "address"],
                condition=models.Q(removed_at__isnull=True, stream__isnull=True),
                name="suppression_live_unique",
            ),
            models.UniqueConstraint(
                fields=["organization", "address", "stream"],
                condition=models.Q(removed_at__isnull=True, stream__isnull=False),
                name="suppression_live_stream_unique",
            ),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="suppression_org_created")]

    def __str__(self) -> str:
        return f"{self.address} ({self.reason})"


class InboundMessage(models.Model):
    """Mail that arrived on the inbound MX (DSNs, feedback reports, auto-replies), stored raw before parsing."""

    class State(models.TextChoices):
        RECEIVED = "received"  # stored, waiting for the processing task
        PROCESSED = "processed"  # understood and applied
        IGNORED = "ignored"  # understood, or not, but nothing to apply (see `note`)
        # A bounce or complaint that cannot be attributed: it names no recipient and carries no return-path
        # token, or nothing maps it to one of our deliveries. Kept and counted, never dropped (see `note`).
        UNMATCHED = "unmatched"
        FAILED = "failed"  # processing raised; the raw message is kept for a later look

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    received_at = models.DateTimeField(default=timezone.now)
    peer_ip = models.CharField(max_length=45, blank=True)
    mail_from = models.CharField(max_length=320, blank=True)
    rcpt_to = models.JSONField(default=list)
    raw = models.BinaryField()
    size = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.RECEIVED)
    # What the classifier said: bounce, complaint, autoreply, unknown.
    type = models.CharField(max_length=12, blank=True)
    organization = models.ForeignKey(Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    recipient = models.ForeignKey(Recipient, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    result = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # For `received`: when the sweep may queue it again (a lease while its task is on the way).
    next_attempt_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="inbound_due")]

    def __str__(self) -> str:
        return f"inbound {self.id} ({self.state})"


class InboundRoute(models.Model):
    """Where mail to an organization's inbound domain goes (sending.inbound.routes has the matching order)."""

    class Action(models.TextChoices):
        POST = "post"  # stored, and POSTed as JSON to the route's endpoint
        STORE = "store"  # stored, readable by API and dashboard
        HOLD = "hold"  # stored as held, for review
        REFUSE = "refuse"  # 550 5.1.1 at RCPT

    class Kind(models.TextChoices):
        EXACT = "exact"  # support@acme.example
        PATTERN = "pattern"  # orders+*@acme.example, team-?@acme.example
        CATCH_ALL = "catch_all"  # *@acme.example

    class DmarcReject(models.TextChoices):
        # What to do with mail that fails DMARC while its From domain publishes p=reject.
        ACCEPT = "accept"
        HOLD = "hold"
        REFUSE = "refuse"  # 550 5.7.1 at the end of DATA

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="inbound_routes")
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="inbound_routes")
    # As given, lower case: "support@inbound.acme.example", "orders+*@...", "*@...".
    match = models.CharField(max_length=320)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    action = models.CharField(max_length=8, choices=Action.choices)
    # The endpoint of a `post` route (purpose `inbound`): its secret signs the posts, its log keeps the attempts.
    endpoint = models.ForeignKey(
        "WebhookEndpoint", on_delete=models.SET_NULL, null=True, blank=True, related_name="inbound_routes"
    )
    dmarc_reject = models.CharField(max_length=8, choices=DmarcReject.choices, default=DmarcReject.ACCEPT)
    # What to do with mail the spam check calls spam (the same three answers; unchecked mail is always accepted).
    spam = models.CharField(max_length=8, choices=DmarcReject.choices, default=DmarcReject.ACCEPT)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["domain", "match"], name="inbound_route_unique")]

    def __str__(self) -> str:
        return f"{self.match} → {self.action}"


class InboundMail(models.Model):
    """Mail accepted for an inbound route: the raw message as received with our Authentication-Results header
    on top, what was parsed from it, and the route's outcome. One row per routed recipient."""

    class State(models.TextChoices):
        STORED = "stored"  # kept (a `store` route; a `post` route's posts are its `deliveries`)
        HELD = "held"  # kept for review (a `hold` route, or DMARC failed under p=reject on a holding route)

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    route = models.ForeignKey(InboundRoute, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    action = models.CharField(max_length=8, choices=InboundRoute.Action.choices)
    state = models.CharField(max_length=12, choices=State.choices, default=State.STORED)
    received_at = models.DateTimeField(default=timezone.now)
    peer_ip = models.CharField(max_length=45, blank=True)
    helo = models.CharField(max_length=255, blank=True)
    mail_from = models.CharField(max_length=320, blank=True)
    rcpt_to = models.CharField(max_length=320)
    from_address = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    message_id = models.CharField(max_length=998, blank=True)
    size = models.PositiveIntegerField()
    raw = models.BinaryField()
    # The parsed message in the post's shape, without attachment contents (sending.inbound.parse).
    parsed = models.JSONField(default=dict, blank=True)
    # SPF, DKIM, DMARC and ARC results (sending.domains.message_authentication), and the header added.
    auth = models.JSONField(default=dict, blank=True)
    # The spam check (sending.inbound.spam): {"checked": true, "score", "threshold", "is_spam", "rules"} from
    # spamd, or {"checked": false, "reason"}; {} for mail received before the check existed.
    spam = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-received_at"], name="inbound_mail_org_time")]

    def __str__(self) -> str:
        return f"inbound mail {self.id} ({self.state})"


class DmarcReport(models.Model):
    """A report receivers sent about one sender domain: a DMARC aggregate report (RFC 7489 §7.2) or an SMTP TLS
    report (RFC 8460), read from the inbound message that brought it (kept for its raw bytes)."""

    class Kind(models.TextChoices):
        AGGREGATE = "aggregate"
        TLS = "tls"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="dmarc_reports")
    inbound = models.ForeignKey(InboundMessage, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    reporter = models.CharField(max_length=253)  # org_name / organization-name
    reporter_email = models.CharField(max_length=320, blank=True)
    report_id = models.CharField(max_length=253)
    begin = models.DateTimeField()
    end = models.DateTimeField()
    policy = models.JSONField(default=dict, blank=True)  # policy_published, as the receiver read it
    # TLS reports: the policies with their session counts and failure details, as sent.
    details = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Receivers resend reports; a report already kept is not counted twice.
            models.UniqueConstraint(fields=["domain", "kind", "reporter", "report_id"], name="dmarc_report_unique")
        ]
        indexes = [models.Index(fields=["domain", "-begin"], name="dmarc_report_domain_begin")]

    def __str__(self) -> str:
        return f"{self.kind} report {self.report_id} from {self.reporter}"


class DmarcReportRow(models.Model):
    """One row of an aggregate report: mail from one source IP with one set of results."""

    report = models.ForeignKey(DmarcReport, on_delete=models.CASCADE, related_name="rows")
    source_ip = models.GenericIPAddressField()
    reverse_name = models.CharField(max_length=253, blank=True)
    count = models.PositiveIntegerField()
    header_from = models.CharField(max_length=253, blank=True)
    envelope_from = models.CharField(max_length=253, blank=True)
    disposition = models.CharField(max_length=12, blank=True)  # none | quarantine | reject
    dkim_aligned = models.BooleanField(default=False)  # policy_evaluated/dkim == pass
    spf_aligned = models.BooleanField(default=False)
    dmarc_pass = models.BooleanField(default=False)
    dkim_results = models.JSONField(default=list, blank=True)  # [{"domain", "selector", "result"}]
    spf_results = models.JSONField(default=list, blank=True)  # [{"domain", "scope", "result"}]
    from_platform = models.BooleanField(default=False)  # the source is one of POSTWERK_SENDING_IPS

    def __str__(self) -> str:
        return f"{self.source_ip}: {self.count}"


class DnsCheckStatus(models.TextChoices):
    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"
    ERROR = "error"  # the lookup failed (timeout, SERVFAIL): says nothing about the record


class DnsCheck(models.Model):
    """The latest result of one named check of one domain (ownership, dkim:SELECTOR, spf, dmarc, ...)."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="dns_checks")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=DnsCheckStatus.choices)
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)
    # When the status last changed; the latest check that was ok, to tell "broken since".
    changed_at = models.DateTimeField(default=timezone.now)
    ok_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["domain", "name"], name="dns_check_unique")]

    def __str__(self) -> str:
        return f"{self.name}: {self.status}"


class IdempotencyKey(models.Model):
    """A send request's answer, kept so a retried request with the same key gets it again."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="idempotency_unique")]

    def __str__(self) -> str:
        return self.key


# --- Webhooks -----------------------------------------------------------------------------------------------


class WebhookEndpoint(models.Model):
    """Where an organization wants its events POSTed, signed with a secret only Postwerk and the owner know."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Event types wanted; empty means every type.
    event_types = models.JSONField(default=list, blank=True)
    # Streams (names) whose mail's events are wanted; empty means every stream. Events of no message always go.
    streams = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)

    class PayloadFormat(models.TextChoices):
        POSTWERK = "postwerk"
        POSTMARK = "postmark"  # Postmark's webhook JSON (sending.webhooks.postmark), for receivers made for Postmark

    payload_format = models.CharField(max_length=8, choices=PayloadFormat.choices, default=PayloadFormat.POSTWERK)
    # Fernet tokens (POSTWERK_ENCRYPTION_KEY): the signature needs the secret itself, so it cannot be hashed.
    secret_encrypted = models.TextField()
    # After a rotation the old secret also signs until this time, so receivers can switch without a gap.
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # `events` endpoints get the event fan-out; an `inbound` endpoint belongs to a post route and only carries
    # its posts (sending.inbound), through the same signing, retries and delivery log.
    purpose = models.CharField(max_length=8, default="events")
    # Events with a larger id are this endpoint's: nothing from before it existed.
    start_event_id = models.BigIntegerField(default=0)
    # The first failure since the last success; failing for POSTWERK_WEBHOOK_DISABLE_AFTER disables it.
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "enabled"], name="webhook_org_enabled")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint: the row the sweep and the workers agree on. Retried until it lands."""

    class State(models.TextChoices):
        PENDING = "pending"  # due at next_attempt_at
        QUEUED = "queued"  # handed to the broker; next_attempt_at is the lease after which the sweep re-queues
        SENDING = "sending"  # claimed by a worker
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # retries exhausted, or the endpoint answered 410 Gone
        CANCELLED = "cancelled"  # the endpoint was disabled or deleted before it was sent

    class Trigger(models.TextChoices):
        AUTO = "auto"
        REPLAY = "replay"
        TEST = "test"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    # Null only for a test send, whose sample body is kept in `payload`.
    event = models.ForeignKey(Event, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    payload = models.JSONField(null=True, blank=True)
    # The inbound mail a post route's delivery carries (its JSON is in `payload`).
    inbound_mail = models.ForeignKey(
        InboundMail, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    # What caused the next attempt (a hand replay is logged as one).
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.AUTO)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    sending_since = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_unique")]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"webhook delivery {self.id} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what came back and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    trigger = models.CharField(max_length=8, choices=WebhookDelivery.Trigger.choices)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    # The HTTP status, or null when there was no answer (timeout, refused, blocked address).
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True)
    ip = models.CharField(max_length=45, blank=True)

    def __str__(self) -> str:
        return f"{self.status_code or self.error} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class WebhookCursor(models.Model):
    """How far the fan-out has read the event table: every event with id <= position has its deliveries.

    Ids are handed out at insert, not at commit: on PostgreSQL a smaller id can become visible after a larger
    one. A hole is waited for (gap_*) before the position moves past it.
    """

    position = models.BigIntegerField(default=0)
    gap_at = models.BigIntegerField(null=True, blank=True)
    gap_since = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"webhook fan-out at event {self.position}"


# --- reputation, send limits, throttling, blocklists (#7) -------------------------------------------------


class ReputationScope(models.TextChoices):
    ORGANIZATION = "organization"
    DOMAIN = "domain"
    API_KEY = "api_key"
    SMTP_CREDENTIAL = "smtp_credential"
    STREAM = "stream"


class ReputationState(models.TextChoices):
    OK = "ok"
    WARNING = "warning"
    PAUSED = "paused"


class Reputation(models.Model):
    """The current reputation of one sending scope: an organization, one of its domains, keys or credentials.

    `scope_id` is the primary key of the scope's row (the organization's own id for the organization scope).
    Threshold fields left empty take the platform's (POSTWERK_REPUTATION_THRESHOLDS); an organization may set
    stricter ones on its own keys and credentials, a circuit breaker for one misbehaving application.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="reputations")
    scope = models.CharField(max_length=16, choices=ReputationScope.choices)
    scope_id = models.PositiveBigIntegerField()
    state = models.CharField(max_length=8, choices=ReputationState.choices, default=ReputationState.OK)
    # The numbers behind the state, as of computed_at.
    deliveries = models.PositiveIntegerField(default=0)
    hard_bounces = models.PositiveIntegerField(default=0)
    complaints = models.PositiveIntegerField(default=0)
    bounce_rate = models.FloatField(default=0.0)
    complaint_rate = models.FloatField(default=0.0)
    computed_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True)
    # Deliveries before this do not count: set on resume, so old history cannot pause the scope again at once.
    window_start = models.DateTimeField(null=True, blank=True)
    bounce_warning = models.FloatField(null=True, blank=True)
    bounce_pause = models.FloatField(null=True, blank=True)
    complaint_warning = models.FloatField(null=True, blank=True)
    complaint_pause = models.FloatField(null=True, blank=True)
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_by = models.CharField(max_length=200, blank=True)
    resume_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "scope", "scope_id"], name="reputation_scope_unique")
        ]
        indexes = [models.Index(fields=["state"], name="reputation_state")]

    def __str__(self) -> str:
        return f"{self.scope} {self.scope_id}: {self.state}"


class ReputationSnapshot(models.Model):
    """One change of a scope's reputation state (automatic, or by a person), with the numbers at that moment."""

    reputation = models.ForeignKey(Reputation, on_delete=models.CASCADE, related_name="history")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=8, choices=ReputationState.choices)
    previous_state = models.CharField(max_length=8, choices=ReputationState.choices)
    deliveries = models.PositiveIntegerField(default=0)
    hard_bounces = models.PositiveIntegerField(default=0)
    complaints = models.PositiveIntegerField(default=0)
    bounce_rate = models.FloatField(default=0.0)
    complaint_rate = models.FloatField(default=0.0)
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=200, blank=True)  # empty: decided by the platform
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="repsnapshot_org_created")]

    def __str__(self) -> str:
        return f"{self.previous_state} -> {self.state} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class SendCounter(models.Model):
    """Messages an organization submitted in one fixed window (an hour or a day, UTC), for its send limits."""

    class Period(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    period = models.CharField(max_length=4, choices=Period.choices)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    warned = models.BooleanField(default=False)  # the 90% event went out
    reached = models.BooleanField(default=False)  # the 100% event went out

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "period", "window_start"], name="sendcounter_window")
        ]

    def __str__(self) -> str:
        return f"{self.period} from {self.window_start:%Y-%m-%d %H:%M}: {self.count}"


class StreamSendCounter(models.Model):
    """Messages admitted on one message stream in one fixed window (an hour or a day, UTC), for the stream's own
    send limits: counted with the same atomic upsert as the organization's SendCounter
    (sending.reputation.send_limits)."""

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="+")
    period = models.CharField(max_length=4, choices=SendCounter.Period.choices)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "period", "window_start"], name="streamsendcounter_window")
        ]

    def __str__(self) -> str:
        return f"{self.period} from {self.window_start:%Y-%m-%d %H:%M}: {self.count}"


class ThrottleRule(models.Model):
    """Traffic shaping for one destination: a recipient domain (`gmail.com`) or an MX host suffix
    (`*.google.com`). Empty limits mean unlimited. Rules here override the built-in ones of the same pattern."""

    class Match(models.TextChoices):
        DOMAIN = "domain"
        MX = "mx"

    pattern = models.CharField(max_length=253, unique=True)
    match = models.CharField(max_length=6, choices=Match.choices, default=Match.DOMAIN)
    max_connections = models.PositiveIntegerField(null=True, blank=True)
    max_messages_per_connection = models.PositiveIntegerField(null=True, blank=True)
    max_messages_per_minute = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.match} {self.pattern}"


class DeliverySlot(models.Model):
    """One of a throttled destination's `max_connections` sessions, leased like verification's ProbeSlot so the
    limit holds across every worker process on every host; a holder that died frees it when the lease ends."""

    key = models.CharField(max_length=260)  # the destination key: the rule's pattern
    slot = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=32, blank=True, default="")  # "" when free
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "slot"], name="deliveryslot_key_slot")]

    def __str__(self) -> str:
        return f"{self.key}#{self.slot} ({self.holder or 'free'})"


class WorkerLease(models.Model):
    """A delivery worker's proof that it is alive (sending.delivery.worker_leases): its claims carry `worker` in
    Recipient.claim_token, it renews `expires_at` while it delivers, and the sweep re-queues the `sending`
    recipients of a lease that ran out or was released, never those of a live one."""

    worker = models.UUIDField()
    slot = models.PositiveSmallIntegerField()  # always 0: one holder per worker (mail.leases' slot rows)
    holder = models.CharField(max_length=32, blank=True, default="")  # "" when released
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "slot"], name="workerlease_worker_slot")]

    def __str__(self) -> str:
        return f"{self.worker} ({self.holder or 'released'})"


class DestinationState(models.Model):
    """Shared state of one destination: its per-minute message count and any back-off a receiver asked for
    (a 421 or 4.7.x "try again later" backs off the whole destination, not just that one message)."""

    key = models.CharField(max_length=260, unique=True)  # a throttle rule's pattern, or a recipient domain
    window_start = models.DateTimeField(null=True, blank=True)
    window_count = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    backoff_reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class BlocklistListing(models.Model):
    """The latest answer of one blocklist zone about one of our sending IPs or an organization's domain."""

    class Kind(models.TextChoices):
        IP = "ip"
        DOMAIN = "domain"

    kind = models.CharField(max_length=6, choices=Kind.choices)
    target = models.CharField(max_length=253)  # the IP address or domain name checked
    zone = models.CharField(max_length=253)
    # The sending domain this is about (kind=domain); IP listings belong to the platform, not one organization.
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    listed = models.BooleanField(default=False)
    answer = models.JSONField(default=list, blank=True)  # the A records returned (127.0.0.x codes)
    reason = models.TextField(blank=True)  # the zone's TXT explanation, if any
    listed_since = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)  # the last lookup failure; a failure changes nothing

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "target", "zone"], name="blocklist_target_zone")]

    def __str__(self) -> str:
        return f"{self.target} on {self.zone}: {'listed' if self.listed else 'clear'}"


class CapturedMessage(models.Model):
    """One SMTP transaction of sandbox mail, as the built-in capture received it instead of an MX: the envelope,
    the bytes exactly as they would have gone out (signed, tracked) and the reply the capture gave."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="captures")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="captures")
    mail_from = models.CharField(max_length=320)
    rcpt_to = models.CharField(max_length=320)
    attempt = models.PositiveIntegerField()
    data = models.BinaryField()
    size = models.PositiveIntegerField()
    code = models.PositiveSmallIntegerField()
    enhanced = models.CharField(max_length=16, blank=True)
    text = models.TextField(blank=True)
    outcome = models.CharField(max_length=16)  # the test address's scenario: delivered, bounce-hard, ...
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="capture_org_created")]

    def __str__(self) -> str:
        return f"capture of {self.rcpt_to} (attempt {self.attempt})"


class MtaStsPolicy(models.Model):
    """A recipient domain's MTA-STS policy (RFC 8461), shared by every worker on every host: fetched when its
    TXT id changes or half its max_age has passed, never per message. A failed fetch is kept too (`failed_at`),
    so no process tries again before POSTWERK_MTA_STS_RETRY, and the policy fetched before stays in force until
    it expires (RFC 8461 §5.1)."""

    domain = models.CharField(max_length=253, unique=True)
    policy_id = models.CharField(max_length=32, blank=True)
    mode = models.CharField(max_length=8, blank=True)  # enforce, testing, none; "" before the first success
    mx = models.JSONField(default=list, blank=True)
    max_age = models.PositiveIntegerField(default=0)
    text = models.TextField(blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # The first failure since the last success: with no cached policy, mail waits until POSTWERK_MTA_STS_FETCH_GRACE
    # after it (sending.delivery.tls_policies).
    failing_since = models.DateTimeField(null=True, blank=True)
    failure = models.CharField(max_length=40, blank=True)  # TLS-RPT result type of the last failure
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.domain} ({self.mode or 'none'})"


class TlsSessionCount(models.Model):
    """TLS-RPT's raw material (RFC 8460 §4.4): connections per UTC day, recipient domain, policy, MX host,
    addresses and result ("" = success), counted as they are made and summed into the daily report."""

    day = models.DateField()
    domain = models.CharField(max_length=253)
    policy_type = models.CharField(max_length=16)  # tlsa, sts, no-policy-found
    policy_key = models.CharField(max_length=32)  # a digest of `policy`, so equal policies share rows
    policy = models.JSONField(default=dict)  # policy-string and mx-host, as the report gives them
    result = models.CharField(max_length=40, blank=True)
    mx_host = models.CharField(max_length=253, blank=True)
    sending_ip = models.CharField(max_length=45, blank=True)
    receiving_ip = models.CharField(max_length=45, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "domain", "policy_key", "result", "mx_host", "sending_ip", "receiving_ip"],
                name="tls_session_count_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.domain} {self.result or 'success'} x{self.count}"


class TlsReport(models.Model):
    """One daily TLS-RPT report for one recipient domain: built once, sent to each `rua` of its `_smtp._tls`."""

    class State(models.TextChoices):
        SENT = "sent"
        FAILED = "failed"  # some destination failed; tried again while the day is recent
        NO_POLICY = "no_policy"  # the domain publishes no usable `_smtp._tls` record: nothing to send

    day = models.DateField()
    domain = models.CharField(max_length=253)
    report_id = models.CharField(max_length=300)
    state = models.CharField(max_length=16, choices=State.choices)
    # Per rua: {"uri", "ok", "detail"} (a mailto's message id, or the HTTP status or error).
    destinations = models.JSONField(default=list, blank=True)
    report = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "domain"], name="tls_report_unique")]

    def __str__(self) -> str:
        return f"{self.day} {self.domain} ({self.state})"


# --- egress: sending IPs, pools, warm-up (sending.delivery.egress) -------------------------------------------


class WarmupSchedule(models.Model):
    """How many messages per receiving provider an IP may send on each day of its warm-up; after the last day
    it is warm (no allowance). An IP without a schedule follows POSTWERK_WARMUP_SCHEDULE."""

    name = models.CharField(max_length=100, unique=True)
    # Day 1 is volumes[0]. Positive integers, usually growing.
    volumes = models.JSONField(default=list, help_text="Messages per provider on day 1, 2, ...: [50, 100, 200]")

    def __str__(self) -> str:
        return f"{self.name} ({len(self.volumes)} days)"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        volumes = self.volumes
        if not isinstance(volumes, list) or not volumes or not all(type(v) is int and v > 0 for v in volumes):
            raise ValidationError({"volumes": "A list of positive whole numbers, one per day: [50, 100, 200]."})


class IpPool(models.Model):
    """Sending IPs used together. Assigned to a sender domain, a stream, an organization, or the shared default
    (most specific first); a pool with no assignment and not the default is used by nobody yet."""

    class WhenExhausted(models.TextChoices):
        # Over today's warm-up allowance (or every IP suspended towards the provider): another warmed pool of
        # the same organization, or wait in the queue until the allowance renews (never failed).
        OVERFLOW = "overflow"
        WAIT = "wait"

    name = models.CharField(max_length=100, unique=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="ip_pools"
    )
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, null=True, blank=True, related_name="ip_pools")
    # A message stream's name (streams are their own feature); with an organization, that organization's stream.
    stream = models.CharField(max_length=100, blank=True)
    is_default = models.BooleanField(default=False, help_text="The shared pool of mail no other pool claims.")
    when_exhausted = models.CharField(max_length=8, choices=WhenExhausted.choices, default=WhenExhausted.WAIT)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True), name="one_default_pool")
        ]

    def __str__(self) -> str:
        return self.name


class SendingIp(models.Model):
    """One source address of outgoing connections, with the EHLO name its reverse DNS (PTR) gives."""

    address = models.GenericIPAddressField(unique=True)
    ehlo_name = models.CharField(max_length=253)
    pool = models.ForeignKey(IpPool, on_delete=models.PROTECT, related_name="ips")
    enabled = models.BooleanField(default=True)
    # Day 1 of the warm-up (UTC); empty: the address is already warm.
    warmup_started = models.DateField(null=True, blank=True)
    schedule = models.ForeignKey(WarmupSchedule, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # The last forward-confirmed reverse DNS check (PTR -> ehlo_name -> address).
    dns_ok = models.BooleanField(null=True, blank=True)
    dns_detail = models.CharField(max_length=300, blank=True)
    dns_checked_at = models.DateTimeField(null=True, blank=True)
    # Its own reputation (sending.reputation.ip_reputation): a paused IP is passed over until an operator resumes
    # it; its rates count outcomes from reputation_since on (the last resume), within the usual window.
    reputation_state = models.CharField(max_length=10, choices=ReputationState.choices, default=ReputationState.OK)
    reputation_reason = models.CharField(max_length=300, blank=True)
    reputation_changed_at = models.DateTimeField(null=True, blank=True)
    reputation_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.address} ({self.ehlo_name})"


class IpDailyUse(models.Model):
    """Messages an IP was given towards one receiving provider on one UTC day (the warm-up's count)."""

    address = models.CharField(max_length=45)
    provider = models.CharField(max_length=40)
    day = models.DateField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["address", "provider", "day"], name="ip_daily_use_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.address} -> {self.provider} on {self.day}: {self.count}"


class IpProviderState(models.Model):
    """What a receiving provider asked of one sending IP (sending.delivery.shaping): slowed to `rate` messages a
    minute, or suspended, until `until`. address "" is the host's own default address."""

    class Action(models.TextChoices):
        SLOW = "slow"
        SUSPEND = "suspend"

    address = models.CharField(max_length=45, blank=True)
    provider = models.CharField(max_length=40)
    action = models.CharField(max_length=8, choices=Action.choices)
    until = models.DateTimeField()
    rate = models.PositiveIntegerField(null=True, blank=True)  # messages per window while slowed
    rule = models.CharField(max_length=100, blank=True)
    reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["address", "provider"], name="ip_provider_state_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.address or 'default'} -> {self.provider}: {self.action} until {self.until:%Y-%m-%d %H:%M}"


# --- Templates ----------------------------------------------------------------------------------------------


class TemplateKind(models.TextChoices):
    STANDARD = "standard"  # a message: subject, HTML and text
    LAYOUT = "layout"  # wraps a standard template's HTML and text where it says {{ content }}
    PARTIAL = "partial"  # a snippet other templates include by alias: {% include "footer" %}


class Template(models.Model):
    """A message template of an organization, addressed by id or alias. What it says lives in its versions: every
    change is a new TemplateVersion and `active_version` is the one sending uses (sending.templating)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="templates")
    # Optional; unique within the organization when set (a partial's alias is what {% include %} names).
    alias = models.CharField(max_length=100, null=True, blank=True)
    kind = models.CharField(max_length=10, choices=TemplateKind.choices, default=TemplateKind.STANDARD)
    active_version = models.ForeignKey(
        "TemplateVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "alias"], name="template_alias_unique"),
        ]

    def __str__(self) -> str:
        return self.alias or f"template {self.pk}"


class TemplateVersion(models.Model):
    """One saved state of a template. Never changed after it is written; restoring an old one writes a copy."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    subject = models.TextField(blank=True)
    html = models.TextField(blank=True)
    text = models.TextField(blank=True)
    # A layout template (kind layout) of the same organization; its deletion is refused while an active version
    # uses it, and leaves older versions without a layout.
    layout = models.ForeignKey(Template, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Strict: a send whose model lacks a variable the template uses is refused (400 naming it), not rendered empty.
    strict = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="template_version_unique")]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"


class StatsCounter(models.Model):
    """Pre-aggregated counts for the stats API and the dashboard's charts (sending.stats): how many deliveries
    reached each outcome (`metric`) in one hour or one UTC day, for all the organization's mail (dimension "")
    and per sender domain, stream, recipient provider and tag (one row per value of each dimension).

    Written by sending.states in the transaction that writes the events they count, so a count and its events
    never disagree; read without touching Message, Recipient or Event. One dimension at a time rather than every
    combination of them: the API groups by one, and a year by day then stays a few thousand rows per dimension
    value, however much mail there was. Domains and streams are keyed by id, not foreign keys: a deleted domain's
    history stays. A message with two tags counts once under each tag (and once in every other dimension).
    Provider "" is a delivery whose MX was not looked up yet (accepted, not yet attempted)."""

    class Span(models.TextChoices):
        HOUR = "h"
        DAY = "d"

    class Dimension(models.TextChoices):
        ALL = "", "all mail"
        DOMAIN = "domain"
        STREAM = "stream"
        PROVIDER = "provider"
        TAG = "tag"

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    span = models.CharField(max_length=1, choices=Span.choices)
    dimension = models.CharField(max_length=8, choices=Dimension.choices, blank=True)
    start = models.DateTimeField()  # the hour or the UTC day the count is of
    metric = models.CharField(max_length=24)
    # The dimension's value: a domain's or stream's id ("0": none), a provider's name, a tag; "" for all mail.
    key = models.CharField(max_length=100, blank=True, default="")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert's conflict target, and the index every read takes: organization, span, dimension, then
            # a time range.
            models.UniqueConstraint(
                fields=["organization", "span", "dimension", "start", "metric", "key"], name="stats_counter_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.dimension}={self.key} {self.start:%Y-%m-%d %H:00} {self.count}"
