"""Renderers beside DRF's JSON one."""

from __future__ import annotations

import json

from rest_framework.renderers import BaseRenderer


class CsvRenderer(BaseRenderer):
    """Lets `Accept: text/csv` through content negotiation; errors still go out as JSON text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):  # type: ignore[no-untyped-def]
        return data.encode() if isinstance(data, str) else json.dumps(data).encode()
