"""`manage.py purge [--raw-days N] [--days N] [--batch N]`: one retention pass now, as beat runs it hourly."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from sending.operations.retention import retention_purge


class Command(BaseCommand):
    help = (
        "Blank the bodies of finished messages older than POSTWERK_RETENTION_RAW_DAYS and delete messages "
        "(recipients, events, tags, webhook deliveries) older than POSTWERK_RETENTION_DAYS. Suppressions stay."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--raw-days", type=int, help="Blank bodies older than this (default: the setting)")
        parser.add_argument("--days", type=int, help="Delete messages older than this (default: the setting)")
        parser.add_argument("--batch", type=int, help="Rows per transaction (default: POSTWERK_RETENTION_BATCH)")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        raw_days, days, batch = options["raw_days"], options["days"], options["batch"]
        for name, value in (("--raw-days", raw_days), ("--days", days), ("--batch", batch)):
            if value is not None and value < (1 if name == "--batch" else 0):
                raise CommandError(f"{name} must be {'positive' if name == '--batch' else 'zero or more'}")
        if raw_days is not None and days is not None and days < raw_days:
            raise CommandError("--days must be at least --raw-days")
        report = retention_purge(raw_days=raw_days, days=days, batch=batch)
        self.stdout.write(json.dumps(report.as_dict()))
