"""What an API key may do: its scopes, and the ceiling its creator's dashboard role puts on them.

Every API view declares the scope it needs (`required_scope`, see sending.api.permissions); a key passes when it
holds that scope (or `full`) and, for a key a member made, when that member's role *now* allows the scope for
the method: reading (GET, HEAD, OPTIONS) or changing (everything else). So a key never has more rights than
the member who made it, also after that member is demoted or removed.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models

from accounts.models import Membership

Role = Membership.Role


class Scope(models.TextChoices):
    SEND = "send", "Send mail (POST /messages, /messages/batch)"
    MESSAGES_READ = "messages:read", "Read messages and their events"
    # Apart from messages:read: a reporting tool reads counts and rates, never an address or a message.
    STATS_READ = "stats:read", "Read sending statistics (counts and rates; no addresses or content)"
    DOMAINS = "domains", "Sender domains: add, verify, rotate DKIM, tracking, delete"
    WEBHOOKS = "webhooks", "Webhook endpoints and their deliveries"
    SUPPRESSIONS = "suppressions", "The suppression list: add, lift, import, export"
    TEMPLATES = "templates", "Message templates"
    STREAMS = "streams", "Message streams: list, add, change"
    REPUTATION = "reputation", "Reputation, thresholds, resume, held mail (list, release, cancel)"
    VERIFICATIONS = "verifications", "Address verification"
    KEYS = "keys", "API keys and SMTP credentials"
    AUDIT_READ = "audit:read", "Read the audit log"
    FULL = "full", "Everything above"


READ, WRITE = "read", "write"

# What a role allows per scope. Mirrors the dashboard's roles (dashboard.access): developers build and send but
# neither mint secrets nor release or cancel held mail; viewers read everything except secrets and the audit log.
_EVERYTHING = {scope: WRITE for scope in Scope.values if scope != Scope.FULL}
ROLE_CEILING: dict[str, dict[str, str]] = {
    Role.OWNER: _EVERYTHING,
    Role.ADMIN: _EVERYTHING,
    Role.DEVELOPER: {
        Scope.SEND: WRITE,
        Scope.MESSAGES_READ: READ,
        Scope.STATS_READ: READ,
        Scope.DOMAINS: WRITE,
        Scope.WEBHOOKS: WRITE,
        Scope.SUPPRESSIONS: WRITE,
        Scope.TEMPLATES: WRITE,
        Scope.STREAMS: WRITE,
        Scope.VERIFICATIONS: WRITE,
        Scope.REPUTATION: READ,
    },
    Role.VIEWER: {
        Scope.MESSAGES_READ: READ,
        Scope.STATS_READ: READ,
        Scope.DOMAINS: READ,
        Scope.WEBHOOKS: READ,
        Scope.SUPPRESSIONS: READ,
        Scope.TEMPLATES: READ,
        Scope.STREAMS: READ,
        Scope.VERIFICATIONS: READ,
        Scope.REPUTATION: READ,
    },
}


class ScopeError(ValueError):
    """A key asked for with bad values (`forbidden` False: a 400) or with more than its creator may give
    (`forbidden` True: a 403). `field` names what was wrong."""

    def __init__(self, message: str, field: str = "scopes", *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.field, self.forbidden = field, forbidden


def scopes_clean(scopes: Iterable[str]) -> list[str]:
    """Known, de-duplicated, in the enum's order; `full` alone when given (it already means all)."""
    given = list(scopes)
    unknown = [s for s in given if s not in Scope.values]
    if unknown:
        raise ScopeError(f"Unknown scope {unknown[0]!r}; one of {', '.join(Scope.values)}.")
    if not given:
        raise ScopeError("Give at least one scope.")
    if Scope.FULL in given:
        return [Scope.FULL.value]
    return [s for s in Scope.values if s in given]


def expanded(scopes: Iterable[str]) -> set[str]:
    """The scopes a list stands for (`full` is every scope)."""
    scopes = set(scopes)
    return set(Scope.values) if Scope.FULL in scopes else scopes


def role_allows(role: str | None, scope: str, *, write: bool) -> bool:
    level = ROLE_CEILING.get(role or "", {}).get(scope)
    return level == WRITE or (level == READ and not write)


def role_may_grant(role: str | None, scopes: Iterable[str]) -> list[str]:
    """The scopes of `scopes` a member of `role` may not put on a key (at least reading must be theirs; a key
    given more is still cut down to the role at each request). `full` needs a role that may do everything."""
    ceiling = ROLE_CEILING.get(role or "", {})
    refused = [s for s in scopes if s != Scope.FULL and s not in ceiling]
    if Scope.FULL in scopes and ceiling is not _EVERYTHING:
        refused.append(Scope.FULL.value)
    return refused


def key_allows(key_scopes: Iterable[str], scope: str) -> bool:
    return scope in expanded(key_scopes)
