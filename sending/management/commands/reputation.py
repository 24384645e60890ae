"""Operators: show an organization's reputation scopes, resume or pause one (with a reason, kept in history)."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sending.models import Reputation
from sending.reputation.rates import reputation_pause, reputation_resume, reputations_for, thresholds_for


class Command(BaseCommand):
    help = "Show reputation scopes (show ORG_ID), or resume / pause one (resume|pause REPUTATION_ID --reason TEXT)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["show", "resume", "pause"])
        parser.add_argument("id", type=int, help="organization id for show; reputation id for resume and pause")
        parser.add_argument("--reason", default="", help="why (required for resume and pause)")
        parser.add_argument("--actor", default="", help="who (default: operator:<login name>)")

    def handle(self, *args: object, **options: object) -> None:
        action, ident = options["action"], int(options["id"])  # type: ignore[call-overload]
        if action == "show":
            for r in reputations_for(ident):
                t = thresholds_for(r)
                self.stdout.write(
                    f"{r.pk:>6} {r.scope:<16} {getattr(r, 'scope_name', ''):<30} {r.state:<8} "
                    f"n={r.deliveries} bounces={r.bounce_rate:.2%} (pause {t.bounce_pause:.2%}) "
                    f"complaints={r.complaint_rate:.3%} (pause {t.complaint_pause:.3%}) {r.reason}"
                )
            return
        reason = str(options["reason"]).strip()
        if not reason:
            raise CommandError("--reason is required")
        reputation = Reputation.objects.filter(pk=ident).first()
        if reputation is None:
            raise CommandError(f"no reputation scope {ident}")
        actor = str(options["actor"]) or f"operator:{getpass.getuser()}"
        if action == "resume":
            reputation_resume(reputation, actor=actor, reason=reason, staff=True)
        else:
            reputation_pause(reputation, actor=actor, reason=reason)
        self.stdout.write(f"{reputation.scope} {reputation.scope_id}: {reputation.state}")
