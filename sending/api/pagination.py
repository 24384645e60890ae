"""The cursor pagination every list of the API uses."""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import NotFound

from sending.api.errors import ApiError


class CursorPagination(pagination.CursorPagination):
    def decode_cursor(self, request):  # type: ignore[no-untyped-def]
        # DRF answers a cursor it cannot read with 404; it is bad input, so a 400 naming the parameter.
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise ApiError(400, "Invalid cursor.", {self.cursor_query_param: [str(exc.detail)]}, "invalid") from exc
