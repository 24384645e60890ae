"""SES's account-level suppression list, read from and written to Postwerk's own (sending.feedback.suppressions):
the organization-wide entries (a stream's own unsubscribes are not account-level, and are not listed).

SES knows two reasons, BOUNCE and COMPLAINT. Postwerk's bounces are BOUNCE and its complaints COMPLAINT; an
entry added through this API is a manual one that remembers the reason it was given.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiKey, Organization
from mail.addresses import AddressError, parse_mailbox
from sending.compat.ses.errors import SesError, bad_request
from sending.feedback.suppressions import suppression_add, suppression_remove
from sending.models import Suppression

REASONS = ("BOUNCE", "COMPLAINT")
_REASON = {
    Suppression.Reason.HARD_BOUNCE: "BOUNCE",
    Suppression.Reason.SOFT_BOUNCE: "BOUNCE",
    Suppression.Reason.COMPLAINT: "COMPLAINT",
    Suppression.Reason.UNSUBSCRIBE: "COMPLAINT",
}
PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000


def destination_put(api_key: ApiKey, body: dict) -> Suppression:
    """PutSuppressedDestination: add (or keep) the address, as a manual entry with SES's reason."""
    address = _address(body.get("EmailAddress"))
    reason = body.get("Reason")
    if reason not in REASONS:
        raise bad_request(f"Reason: one of {', '.join(REASONS)}.")
    row, _ = suppression_add(
        organization_id=api_key.organization_id,
        address=address,
        reason=Suppression.Reason.MANUAL,
        details={"ses_reason": reason},
        created_by=f"api-key:{api_key.name}",
    )
    return row


def destination_get(organization: Organization, address: str) -> dict:
    """GetSuppressedDestination's SuppressedDestination. Raises SesError (NotFoundException)."""
    row = _live(organization).filter(address=_address(address)).first()
    if row is None:
        raise _not_found(address)
    attributes = {"MessageId": str(row.source_message_id)} if row.source_message_id else {}
    return {**_summary(row), "Attributes": attributes}


def destination_delete(api_key: ApiKey, address: str) -> None:
    """DeleteSuppressedDestination. Raises SesError (NotFoundException) for an address not on the list."""
    organization = api_key.organization
    if not _live(organization).filter(address=_address(address)).exists():
        raise _not_found(address)
    suppression_remove(organization_id=organization.pk, address=address, removed_by=f"api-key:{api_key.name}")


def destinations_list(organization: Organization, params: Mapping) -> dict:
    """ListSuppressedDestinations: newest first, filtered by Reasons, StartDate and EndDate; NextToken pages."""
    rows = _live(organization).order_by("-created_at", "-id")
    # The SDKs send the Reasons member as repeated `Reason` query parameters (its locationName).
    reasons = params.getlist("Reason") if hasattr(params, "getlist") else []
    if any(r not in REASONS for r in reasons):
        raise bad_request(f"Reasons: each one of {', '.join(REASONS)}.")
    start, end = _time(params.get("StartDate"), "StartDate"), _time(params.get("EndDate"), "EndDate")
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lte=end)
    size = _page_size(params.get("PageSize"))
    offset = _offset(params.get("NextToken"))
    summaries, seen, more = [], 0, False
    # Reasons filter on the SES reason, which a manual entry keeps in its details: filtered here, in pages.
    for row in rows[offset:].iterator(chunk_size=500):
        if reasons and _reason(row) not in reasons:
            seen += 1
            continue
        if len(summaries) == size:
            more = True
            break
        summaries.append(_summary(row))
        seen += 1
    answer: dict = {"SuppressedDestinationSummaries": summaries}
    if more:
        answer["NextToken"] = base64.urlsafe_b64encode(f"offset:{offset + seen}".encode()).decode()
    return answer


def _live(organization: Organization) -> QuerySet[Suppression]:
    return Suppression.objects.filter(organization=organization, stream__isnull=True, removed_at__isnull=True).exclude(
        expires_at__lte=timezone.now()
    )


def _summary(row: Suppression) -> dict:
    return {"EmailAddress": row.address, "Reason": _reason(row), "LastUpdateTime": row.created_at.timestamp()}


def _reason(row: Suppression) -> str:
    return _REASON.get(row.reason) or row.details.get("ses_reason") or "BOUNCE"


def _address(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request("EmailAddress: required.")
    try:
        return parse_mailbox(value).envelope_address.lower()
    except AddressError as exc:
        raise bad_request(f"EmailAddress: {exc}") from exc


def _not_found(address: str) -> SesError:
    return SesError("NotFoundException", f"Email address {address} does not exist on your suppression list.")


def _time(value: str | None, name: str) -> datetime | None:
    """botocore sends timestamps in a query string as ISO 8601."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.fromtimestamp(float(value), tz=UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise bad_request(f"{name}: not a date.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _page_size(value: str | None) -> int:
    if not value:
        return PAGE_SIZE
    try:
        size = int(value)
    except ValueError as exc:
        raise bad_request("PageSize: a number.") from exc
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise bad_request(f"PageSize: 1 to {MAX_PAGE_SIZE}.")
    return size


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "offset" and number.isdigit():
            return int(number)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise SesError("InvalidNextTokenException", "The NextToken is not valid.")
