"""The API's JSON parser: DRF's, with a nesting bomb answered 400 instead of 500."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            # json.loads recurses once per nested array or object; DRF only turns ValueError into a 400.
            raise ParseError("JSON parse error - the body is nested too deeply.") from exc
