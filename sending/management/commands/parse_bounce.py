"""`manage.py parse_bounce FILE [FILE ...] [--json | --summary]`: classify saved bounces, complaints, auto-replies.

The same code as the live intake (`mail.bounces.parse.parse_report`). With --json, one JSON object per file per
line; without, one readable line per recipient (with the rule that decided, `matched_by`). An unreadable file is
reported on stderr and makes the command exit with status 1 once every other file has been processed.

With --summary, each FILE is a folder of labelled messages (<family>/<name>.eml with <name>.json beside it, as in
tests/data/bounces/): it prints, per family and per reason, how often the recipients, hard/soft and reason agree
with the labels, the complaints recognised, any sender-side rejection classified hard, and the messages that
disagree (`mail.bounces.evaluate`).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mail.bounces.evaluate import evaluate, format_summary
from mail.bounces.parse import Report, parse_report


def report_json(path: str, report: Report) -> dict:
    """The --json shape (kept stable for scripts): the Report's fields and these recipient fields only."""
    data = report.to_dict()
    data.pop("unnamed", None)
    data["recipients"] = [
        {
            "address": r["address"],
            "kind": r["kind"],
            "reason": r["reason"],
            "status": r["status"],
            "diagnostic": r["diagnostic"],
            "action": r["action"],
            "remote_mta": r["remote_mta"],
        }
        for r in data["recipients"]
    ]
    return {"file": path, **data}


class Command(BaseCommand):
    help = "Classify bounce, complaint and auto-reply messages saved as files (.eml)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("files", nargs="+", metavar="FILE", help="Raw message files")
        parser.add_argument("--json", action="store_true", help="One JSON object per file per line")
        parser.add_argument(
            "--summary", action="store_true", help="FILE is a folder of labelled messages: print agreement rates"
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        if options["summary"]:
            return self._summary(options["files"])
        failed: list[str] = []
        for path in options["files"]:
            try:
                raw = Path(path).read_bytes()
            except OSError as exc:
                self.stderr.write(f"{path}: cannot read: {exc.strerror or exc}")
                failed.append(path)
                continue
            report = parse_report(raw)
            if options["json"]:
                self.stdout.write(json.dumps(report_json(path, report), ensure_ascii=False))
                continue
            if not report.recipients:
                self.stdout.write(f"{path}: {report.type}, no recipients")
            for r in report.recipients:
                status = f" {r.status}" if r.status else ""
                self.stdout.write(
                    f"{path}: {report.type} {r.action} {r.address} {r.kind} {r.reason}{status} [{r.matched_by}]"
                    + (f" ({r.diagnostic[:160]})" if r.diagnostic else "")
                )
        if failed:
            raise CommandError(f"{len(failed)} file(s) could not be read: {', '.join(failed)}", returncode=1)

    def _summary(self, folders: list[str]) -> None:
        for folder in folders:
            path = Path(folder)
            if not path.is_dir():
                raise CommandError(f"{folder}: not a folder of labelled messages", returncode=1)
            summary = evaluate(path)
            if not summary.families:
                raise CommandError(f"{folder}: no labelled messages (<name>.eml with <name>.json)", returncode=1)
            for line in format_summary(summary):
                self.stdout.write(line)
            for miss in summary.misses:
                self.stdout.write(f"disagrees: {miss}")
