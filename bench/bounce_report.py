"""`make bounce-report`: the bounce classifier on the project's own corpus (tests/data/bounces), against its goals.

Prints per-family and per-reason agreement with the labels (`mail.bounces.evaluate`), then checks the figures
issue #20 asks for and exits 1 if one is missed:

- failed recipients found (exact addresses) >= 98% of messages;
- hard/soft agrees >= 95%;
- complaints recognised: all;
- no sender-side rejection (label `sender_rejected`) ever classified hard;

and reports the parser's speed in messages per second over the corpus (best of --rounds passes; a measurement,
not a pass/fail figure: it depends on the machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mail.bounces.evaluate import evaluate, format_summary, labelled  # noqa: E402
from mail.bounces.parse import parse_report  # noqa: E402

GOALS = {"recipients": 0.98, "kind": 0.95}


def speed(folder: Path, rounds: int) -> float:
    messages = [path.read_bytes() for path in labelled(folder)]
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for raw in messages:
            parse_report(raw)
        best = min(best, time.perf_counter() - started)
    return len(messages) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(ROOT / "tests/data/bounces"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.corpus)
    summary = evaluate(folder)
    for line in format_summary(summary)[:-1]:  # the speed line is measured below, over several rounds
        print(line)
    total = summary.total
    figures = {
        "recipients": total.recipients_ok / total.messages,
        "kind": total.kind_ok / total.messages,
    }
    failures = [f"{name} {figures[name]:.1%} < {goal:.0%}" for name, goal in GOALS.items() if figures[name] < goal]
    if summary.complaints["ok"] != summary.complaints["total"]:
        failures.append(f"complaints {summary.complaints['ok']}/{summary.complaints['total']}")
    failures += [f"sender-side rejection classified hard: {path}" for path in summary.sender_hard]
    print(f"parser: {speed(folder, args.rounds):,.0f} messages/second (best of {args.rounds})")
    for miss in summary.misses:
        print(f"disagrees: {miss}")
    print("goals: " + ("met" if not failures else "MISSED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
