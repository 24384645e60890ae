"""The suppression list as CSV: export, and import with a report of the lines that could not be applied.
Shared by the API and the dashboard."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from accounts.audit import audit_record
from mail.addresses import AddressError, parse_mailbox
from sending.feedback.suppressions import suppression_add
from sending.models import Suppression

CSV_FIELDS = ["address", "reason", "created_at", "expires_at", "created_by", "source_message_id", "details"]
MAX_IMPORT_ROWS = 100_000


def suppressions_csv(rows: Iterable[Suppression]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        writer.writerow(
            [
                row.address,
                row.reason,
                row.created_at.isoformat(),
                row.expires_at.isoformat() if row.expires_at else "",
                row.created_by,
                row.source_message_id or "",
                row.details.get("reason") or row.details.get("note") or "",
            ]
        )
    return out.getvalue()


@dataclass
class ImportResult:
    added: int = 0
    existing: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def suppressions_import(*, organization_id: int, text: str, created_by: str) -> ImportResult:
    """CSV with an `address` column and optional `reason`, or one address per line. Bad lines are reported,
    the others applied."""
    rows = list(csv.reader(io.StringIO(text)))
    first = [h.strip().lower() for h in rows[0]] if rows else []
    has_header = "address" in first
    header, body = (first, rows[1:]) if has_header else (["address"], rows)
    if len(body) > MAX_IMPORT_ROWS:
        raise ValueError(f"At most {MAX_IMPORT_ROWS} rows per import; got {len(body)}.")
    result = ImportResult()
    for line, values in enumerate(body, start=2 if has_header else 1):
        if not any(v.strip() for v in values):
            continue
        record = dict(zip(header, (v.strip() for v in values), strict=False))
        reason = record.get("reason") or Suppression.Reason.MANUAL
        try:
            address = parse_mailbox(record.get("address", "")).envelope_address.lower()
        except AddressError as exc:
            result.errors.append((line, str(exc)))
            continue
        if reason not in Suppression.Reason.values:
            result.errors.append((line, f"unknown reason {reason!r}"))
            continue
        _, created = suppression_add(
            organization_id=organization_id, address=address, reason=reason, created_by=created_by, audit=False
        )
        result.added += created
        result.existing += not created
    audit_record(
        organization=organization_id,
        action="suppression.imported",
        changes={"added": result.added, "existing": result.existing, "errors": len(result.errors)},
    )
    return result
