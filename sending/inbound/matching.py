"""Which route an address goes to. Pure: no database.

The order (first that matches wins):
1. an exact route for the whole address (`support+42@acme.example` only matches a route with that address);
2. a pattern route whose local part matches, with `*` (any characters, none too) and `?` (one character);
   among several, the one with the most literal characters, then the first in alphabetical order;
3. an exact route for the address without its `+tag` (RFC 5233 sub-addressing: `support+42@` goes to
   `support@`), so a route written for a mailbox also gets its tagged variants;
4. the catch-all route of the domain (`*@acme.example`).
Local parts are compared in lower case: receivers treat them case-insensitively in practice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EXACT, PATTERN, CATCH_ALL = "exact", "pattern", "catch_all"
TAG_SEPARATOR = "+"
# RFC 5321 §4.5.3.1.1: a local part is at most 64 octets. Dot-atom characters plus the wildcards.
_LOCAL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64}\Z")


class MatchError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedMatch:
    match: str  # normalised: lower case local part "@" host
    kind: str  # exact | pattern | catch_all
    local: str
    host: str


@dataclass(frozen=True)
class RouteRef:
    """What matching needs of a route: its id, kind and local part (all of one host)."""

    id: object
    kind: str
    local: str
    match: str


def match_parse(match: str) -> ParsedMatch:
    """`support@h`, `orders+*@h`, `*@h` → its kind; MatchError says what is wrong."""
    text = (match or "").strip().lower()
    local, at, host = text.rpartition("@")
    if not at or not local or not host:
        raise MatchError(
            "Give an address or a pattern such as support@acme.example, orders+*@acme.example or *@acme.example."
        )
    if not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise MatchError(f"{local!r} is not a local part (letters, digits and !#$%&'+/=^_`{{|}}~.- with * or ?).")
    host = host.rstrip(".")
    if local == "*":
        kind = CATCH_ALL
    elif "*" in local or "?" in local:
        kind = PATTERN
    else:
        kind = EXACT
    return ParsedMatch(f"{local}@{host}", kind, local, host)


def _pattern(local: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in local) + r"\Z")


def _literal_length(local: str) -> int:
    return sum(1 for c in local if c not in "*?")


def split_tag(local: str) -> tuple[str, str]:
    """`orders+42` → (`orders`, `42`); no tag → (local, "")."""
    base, sep, tag = local.partition(TAG_SEPARATOR)
    return (base, tag) if sep and base else (local, "")


def route_for(local: str, routes: Iterable[RouteRef]) -> RouteRef | None:
    """The route for `local` (of the routes' one host) in the module's order, or None."""
    local = local.lower()
    exact: dict[str, RouteRef] = {}
    patterns: list[RouteRef] = []
    catch_all: RouteRef | None = None
    for route in routes:
        if route.kind == EXACT:
            exact[route.local] = route
        elif route.kind == PATTERN:
            patterns.append(route)
        elif route.kind == CATCH_ALL:
            catch_all = route
    if local in exact:
        return exact[local]
    matching: Sequence[RouteRef] = [r for r in patterns if _pattern(r.local).match(local)]
    if matching:
        return sorted(matching, key=lambda r: (-_literal_length(r.local), r.local))[0]
    base, tag = split_tag(local)
    if tag and base in exact:
        return exact[base]
    return catch_all
