"""Reading one of the caller's objects by id: the one place the API turns "not yours" into "not found"."""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, QuerySet

from accounts.models import Organization
from sending.api.errors import ApiError

M = TypeVar("M", bound=Model)


def owned_or_404(rows: type[M] | QuerySet[M], organization: Organization, what: str, **lookup: object) -> M:
    """The organization's row matching `lookup`, or the API's JSON 404 ("No such <what>."). An id of another
    organization answers exactly like one that does not exist, so ids cannot be probed across tenants."""
    queryset = rows.objects.all() if isinstance(rows, type) else rows
    row = queryset.filter(organization=organization, **lookup).first()
    if row is None:
        raise ApiError(404, f"No such {what}.", code="not_found")
    return row
