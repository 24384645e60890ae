"""Measure the classifier on a folder of labelled messages: <family>/<name>.eml with <name>.json beside it.

The label is {"type", "recipients": [{"address", "kind", "reason"[, "action"]}]}. Per message it counts:
- recipients: every labelled address was found, and no other (order does not matter);
- kind: hard/soft agrees for every labelled recipient that was found;
- reason: the reason agrees for every labelled recipient that was found;
- complaints: a labelled complaint came back as a complaint naming its recipients;
- sender_hard: a recipient labelled `sender_rejected` came back hard (must never happen).
Used by `manage.py parse_bounce --summary` and `make bounce-report`. Pure: files in, numbers out.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mail.bounces.parse import parse_report


@dataclass
class Tally:
    messages: int = 0
    recipients_ok: int = 0
    kind_ok: int = 0
    reason_ok: int = 0
    type_ok: int = 0

    def add(self, other: Tally) -> None:
        for name in ("messages", "recipients_ok", "kind_ok", "reason_ok", "type_ok"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Summary:
    families: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    reasons: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # reason -> {ok, total}
    complaints: Counter = field(default_factory=Counter)  # ok, total
    sender_hard: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> Tally:
        total = Tally()
        for tally in self.families.values():
            total.add(tally)
        return total


def labelled(folder: Path) -> list[Path]:
    """Every .eml under folder (one level of families, or the folder itself) that has a .json label."""
    paths = sorted(folder.glob("*/*.eml")) + sorted(folder.glob("*.eml"))
    return [p for p in paths if p.with_suffix(".json").exists()]


def evaluate(folder: Path) -> Summary:
    summary = Summary()
    for path in labelled(folder):
        family = path.parent.name if path.parent != folder else folder.name
        label = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        raw = path.read_bytes()
        started = time.perf_counter()
        report = parse_report(raw)
        summary.seconds += time.perf_counter() - started
        tally = summary.families[family]
        tally.messages += 1
        want = {r["address"].lower(): r for r in label.get("recipients", [])}
        got = {r.address: r for r in report.recipients}
        tally.type_ok += report.type == label["type"]
        tally.recipients_ok += set(got) == set(want)
        found = [a for a in want if a in got]
        kind_ok = all(got[a].kind == want[a]["kind"] for a in found) and bool(found or not want)
        reason_ok = all(got[a].reason == want[a]["reason"] for a in found) and bool(found or not want)
        tally.kind_ok += kind_ok
        tally.reason_ok += reason_ok
        for address, entry in want.items():
            summary.reasons[entry["reason"]]["total"] += 1
            summary.reasons[entry["reason"]]["ok"] += address in got and got[address].reason == entry["reason"]
            if entry["reason"] == "sender_rejected" and address in got and got[address].kind == "hard":
                summary.sender_hard.append(str(path))
        if label["type"] == "complaint":
            summary.complaints["total"] += 1
            summary.complaints["ok"] += report.type == "complaint" and set(got) == set(want)
        if not (set(got) == set(want) and kind_ok and reason_ok and report.type == label["type"]):
            summary.misses.append(f"{family}/{path.stem}")
    return summary


def _rate(ok: int, total: int) -> str:
    return f"{ok:4}/{total:<4} {ok / total:7.1%}" if total else f"{ok:4}/{total:<4}     n/a"


def format_summary(summary: Summary) -> list[str]:
    lines = [f"{'family':18} {'recipients':>17} {'hard/soft':>17} {'reason':>17}"]
    for family in sorted(summary.families):
        t = summary.families[family]
        lines.append(
            f"{family:18} {_rate(t.recipients_ok, t.messages)} {_rate(t.kind_ok, t.messages)}"
            f" {_rate(t.reason_ok, t.messages)}"
        )
    t = summary.total
    lines.append(
        f"{'total':18} {_rate(t.recipients_ok, t.messages)} {_rate(t.kind_ok, t.messages)}"
        f" {_rate(t.reason_ok, t.messages)}"
    )
    lines.append("")
    lines.append(f"{'reason':18} {'agrees':>17}")
    for reason in sorted(summary.reasons):
        counts = summary.reasons[reason]
        lines.append(f"{reason:18} {_rate(counts['ok'], counts['total'])}")
    lines.append("")
    lines.append(f"complaints recognised: {_rate(summary.complaints['ok'], summary.complaints['total'])}")
    lines.append(f"sender-side rejections classified hard: {len(summary.sender_hard)}")
    if summary.seconds:
        lines.append(f"parser: {t.messages / summary.seconds:,.0f} messages/second")
    return lines
