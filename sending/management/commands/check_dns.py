"""`manage.py check_dns DOMAIN [--json]`: run every DNS check of a known domain now, as the API's verify does."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from sending.domains.service import DomainError, normalize_domain
from sending.domains.verification import domain_verify
from sending.models import Domain


class Command(BaseCommand):
    help = "Check a sender domain's ownership, DKIM, SPF, DMARC and return-path records and store the results."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("domain", nargs="+", help="A domain known to Postwerk")
        parser.add_argument("--json", action="store_true", help="One JSON object per domain")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        for name in options["domain"]:
            try:
                domain = Domain.objects.get(name=normalize_domain(name))
            except (DomainError, Domain.DoesNotExist):
                raise CommandError(f"{name} is not a domain known to Postwerk") from None
            checks = domain_verify(domain=domain)
            domain.refresh_from_db()
            if options["json"]:
                self.stdout.write(
                    json.dumps(
                        {
                            "domain": domain.name,
                            "verified": domain.verified_at is not None,
                            "checks": [
                                {"name": c.name, "status": c.status, "message": c.message, "details": c.details}
                                for c in checks
                            ],
                        }
                    )
                )
                continue
            self.stdout.write(f"{domain.name}: {'verified' if domain.verified_at else 'not verified'}")
            for c in checks:
                self.stdout.write(f"  {c.name:<18} {c.status:<8} {c.message}")
