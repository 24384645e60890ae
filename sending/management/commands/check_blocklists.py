"""`manage.py check_blocklists [--json]`: check the sending IPs and verified domains against the blocklists now."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from sending.reputation.blocklists import blocklists_check


class Command(BaseCommand):
    help = "Check POSTWERK_SENDING_IPS against the DNSBL zones and verified domains against the domain blocklists."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--json", action="store_true", help="One JSON object per target and zone")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        results = blocklists_check()
        if not results:
            self.stderr.write("nothing to check: set POSTWERK_SENDING_IPS or verify a sending domain")
        for row, answer in results:
            if options["json"]:
                self.stdout.write(
                    json.dumps(
                        {
                            "kind": row.kind,
                            "target": row.target,
                            "zone": row.zone,
                            "status": answer.status,
                            "codes": answer.codes,
                            "reason": answer.reason,
                            "error": answer.error,
                            "listed_since": row.listed_since.isoformat() if row.listed_since else None,
                        }
                    )
                )
                continue
            detail = answer.error or " ".join(answer.codes) or ""
            self.stdout.write(f"{row.target:<40} {row.zone:<28} {answer.status:<7} {detail} {answer.reason}".rstrip())
