"""Receiving mailbox providers: which one runs a destination (by its MX host names), the limits to keep towards it
from one sending IP, and which of its replies say something about that IP (a rate limit, a block).

Pure data and matching: the data is a TOML file (`providers.toml` beside this module, or an operator's copy),
parsed by the standard library's tomllib; nothing here knows of organizations, pools or the database.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mail.errors import PostwerkError

SHIPPED = Path(__file__).with_name("providers.toml")
OTHER = "other"  # a destination no provider claims
ACTIONS = ("slow", "suspend")


class ProviderDataError(PostwerkError, ValueError):
    """The providers file is not what the format says (named field, provider and rule)."""


@dataclass(frozen=True)
class ReplyRule:
    name: str
    action: str  # slow | suspend
    duration: int  # seconds
    rate: int | None = None  # messages per minute while slowed
    codes: tuple[int, ...] = ()
    enhanced: str = ""
    text: re.Pattern[str] | None = None

    def matches(self, code: int, enhanced: str, text: str) -> bool:
        if self.codes and code not in self.codes:
            return False
        if self.enhanced and not (enhanced == self.enhanced or enhanced.startswith(self.enhanced + ".")):
            return False
        return self.text is None or bool(self.text.search(text))


@dataclass(frozen=True)
class Provider:
    name: str
    label: str = ""
    mx: tuple[str, ...] = ()
    max_connections: int | None = None
    max_messages_per_connection: int | None = None
    max_messages_per_minute: int | None = None
    rules: tuple[ReplyRule, ...] = ()

    def rule_for(self, code: int, enhanced: str, text: str) -> ReplyRule | None:
        """The first rule this reply matches; None for an ordinary reply (success, a bad address...)."""
        if 200 <= code < 300:
            return None
        return next((r for r in self.rules if r.matches(code, enhanced, text)), None)


UNKNOWN = Provider(OTHER, "other")


@dataclass(frozen=True)
class Providers:
    providers: tuple[Provider, ...] = ()
    _suffixes: tuple[tuple[str, Provider], ...] = field(default=(), repr=False)

    def identify(self, mx_hosts: list[str]) -> Provider:
        """The provider of the best-preference MX host a provider claims (longest suffix first), else UNKNOWN."""
        for host in mx_hosts:
            host = host.lower().rstrip(".")
            for suffix, provider in self._suffixes:
                if host == suffix or host.endswith("." + suffix):
                    return provider
        return UNKNOWN

    def get(self, name: str) -> Provider:
        return next((p for p in self.providers if p.name == name), UNKNOWN)


def _int(value: object, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProviderDataError(f"{where}: an integer of at least {minimum}, not {value!r}")
    return value


def _rule(raw: dict, where: str) -> ReplyRule:
    name = str(raw.get("name") or where)
    where = f"{where} ({name})"
    action = raw.get("action")
    if action not in ACTIONS:
        raise ProviderDataError(f"{where}.action: one of {', '.join(ACTIONS)}, not {action!r}")
    codes = raw.get("codes", [])
    if not isinstance(codes, list):
        raise ProviderDataError(f"{where}.codes: a list of reply codes")
    text = raw.get("text")
    try:
        pattern = re.compile(text, re.IGNORECASE) if text else None
    except re.error as exc:
        raise ProviderDataError(f"{where}.text: not a regular expression: {exc}") from exc
    if not (codes or raw.get("enhanced") or pattern):
        raise ProviderDataError(f"{where}: give at least one of codes, enhanced, text (it would match every reply)")
    return ReplyRule(
        name=name,
        action=action,
        duration=_int(raw.get("duration"), f"{where}.duration", minimum=1),
        rate=_int(raw["rate"], f"{where}.rate", minimum=1) if action == "slow" else None,
        codes=tuple(_int(c, f"{where}.codes", minimum=200) for c in codes),
        enhanced=str(raw.get("enhanced", "")),
        text=pattern,
    )


def parse(data: dict) -> Providers:
    providers = []
    for name, raw in (data.get("providers") or {}).items():
        where = f"providers.{name}"
        if not isinstance(raw, dict) or not raw.get("mx"):
            raise ProviderDataError(f"{where}.mx: a list of MX host suffixes")
        limits = {
            key: (_int(raw.get(key, 0), f"{where}.{key}") or None)
            for key in ("max_connections", "max_messages_per_connection", "max_messages_per_minute")
        }
        rules = tuple(_rule(r, f"{where}.rules[{i}]") for i, r in enumerate(raw.get("rules", [])))
        mx = tuple(str(m).lower().strip().removeprefix("*.").rstrip(".") for m in raw["mx"])
        providers.append(Provider(name=name, label=str(raw.get("label", name)), mx=mx, rules=rules, **limits))
    suffixes = sorted(((s, p) for p in providers for s in p.mx), key=lambda item: -len(item[0]))
    return Providers(tuple(providers), tuple(suffixes))


def file_stamp(path: str) -> tuple[str, float]:
    """What tells a cached copy of the providers file from a changed one: its path and modification time (0 for
    the shipped file, -1 when it cannot be read)."""
    try:
        return path, (os.stat(path).st_mtime if path else 0.0)
    except OSError:
        return path, -1.0


def load(path: str | Path | None = None) -> Providers:
    """The providers of `path` (the shipped file when empty). Raises ProviderDataError naming what is wrong."""
    path = Path(path) if path else SHIPPED
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProviderDataError(f"{path}: {exc}") from exc
    return parse(data)
