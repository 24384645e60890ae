"""Operators: sending IPs, pools and warm-up schedules (the admin does the same), and the providers in force.

manage.py ips list [--json]
manage.py ips pool-add NAME [--organization ID] [--domain NAME] [--stream NAME] [--default]
                           [--when-exhausted wait|overflow]
manage.py ips schedule-add NAME 50,100,200,...
manage.py ips add ADDRESS --ehlo NAME --pool NAME [--warmup-start YYYY-MM-DD|today] [--schedule NAME]
                           [--no-dns-check]
manage.py ips check ADDRESS          (forward-confirmed reverse DNS again)
manage.py ips disable|enable|remove ADDRESS
manage.py ips clear ADDRESS PROVIDER (lift a provider's slow-down or suspension)
manage.py ips resume ADDRESS --reason TEXT (put an IP its own reputation paused back to work)
manage.py ips providers              (the provider data in force: MX suffixes, limits, reply rules)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, date, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import Organization
from mail.providers import ProviderDataError
from sending.delivery.pools import (
    EgressError,
    ip_add,
    ip_dns_recheck,
    ip_remove,
    pool_create,
    provider_state_clear,
    schedule_create,
)
from sending.delivery.shaping import providers
from sending.models import Domain, IpPool, SendingIp, WarmupSchedule
from sending.reputation.ip_reputation import ip_reputation_resume
from sending.reputation.ip_status import ip_statuses

ACTIONS = [
    "list",
    "pool-add",
    "schedule-add",
    "add",
    "check",
    "disable",
    "enable",
    "remove",
    "clear",
    "resume",
    "providers",
]


class Command(BaseCommand):
    help = "Manage sending IPs, pools and warm-up schedules; show them and the provider data in force."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("values", nargs="*", help="NAME / ADDRESS, then what the action takes (see --help)")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--organization", type=int)
        parser.add_argument("--domain", default="")
        parser.add_argument("--stream", default="")
        parser.add_argument("--default", action="store_true")
        parser.add_argument("--when-exhausted", default=IpPool.WhenExhausted.WAIT)
        parser.add_argument("--ehlo", default="")
        parser.add_argument("--pool", default="")
        parser.add_argument("--warmup-start", default="", help="day 1 of the warm-up (UTC), or 'today'; none: warm")
        parser.add_argument("--schedule", default="")
        parser.add_argument("--reason", default="", help="resume: why (kept in the event and the audit log)")
        parser.add_argument("--no-dns-check", action="store_true", help="add it even if its reverse DNS is not right")

    def handle(self, *args: object, **options: object) -> None:
        action = str(options["action"])
        positional = [str(a) for a in options["values"]]  # type: ignore[attr-defined]
        try:
            getattr(self, "do_" + action.replace("-", "_"))(positional, options)
        except (EgressError, ProviderDataError) as exc:
            raise CommandError(str(exc)) from exc

    def _need(self, positional: list[str], n: int, what: str) -> list[str]:
        if len(positional) < n:
            raise CommandError(f"give {what}")
        return positional

    def do_list(self, positional: list[str], options: dict) -> None:
        rows = ip_statuses()
        if options["json"]:
            self.stdout.write(json.dumps([asdict(r) for r in rows], default=str, indent=2))
            return
        for r in rows:
            warm = "warm" if r.warmup_day is None else f"day {r.warmup_day}/{r.warmup_days}, {r.allowance}/provider"
            states = ", ".join(
                f"{s['provider']} {s['action']} until {s['until']:%Y-%m-%d %H:%M}" for s in r.provider_states
            )
            self.stdout.write(
                f"{r.address:<16} {r.ehlo_name:<32} pool={r.pool:<16} {warm:<28} today={r.used_today} "
                f"dns={'ok' if r.dns_ok else 'NOT OK'} rep={r.reputation['state']} {states}"
            )

    def do_pool_add(self, positional: list[str], options: dict) -> None:
        (name, *_) = self._need(positional, 1, "the pool's name")
        organization = None
        if options["organization"]:
            organization = Organization.objects.filter(pk=options["organization"]).first()
            if organization is None:
                raise CommandError(f"no organization {options['organization']}")
        domain = None
        if options["domain"]:
            domain = Domain.objects.filter(name=str(options["domain"]).lower()).first()
            if domain is None:
                raise CommandError(f"no sender domain {options['domain']}")
        pool = pool_create(
            name=name,
            organization=organization,
            domain=domain,
            stream=str(options["stream"]),
            is_default=bool(options["default"]),
            when_exhausted=str(options["when_exhausted"]),
        )
        self.stdout.write(f"pool {pool.name} ({pool.pk})")

    def do_schedule_add(self, positional: list[str], options: dict) -> None:
        name, volumes = self._need(positional, 2, "the schedule's name and its daily volumes (50,100,200)")[:2]
        try:
            numbers = [int(v) for v in volumes.split(",") if v.strip()]
        except ValueError as exc:
            raise CommandError("volumes: whole numbers separated by commas") from exc
        schedule = schedule_create(name=name, volumes=numbers)
        self.stdout.write(f"schedule {schedule.name}: {len(numbers)} days")

    def do_add(self, positional: list[str], options: dict) -> None:
        (address, *_) = self._need(positional, 1, "the address")
        pool = IpPool.objects.filter(name=options["pool"]).first()
        if pool is None:
            raise CommandError(f"--pool: no pool named {options['pool']!r}")
        schedule = None
        if options["schedule"]:
            schedule = WarmupSchedule.objects.filter(name=options["schedule"]).first()
            if schedule is None:
                raise CommandError(f"--schedule: no schedule named {options['schedule']!r}")
        ip = ip_add(
            address=address,
            ehlo_name=str(options["ehlo"]),
            pool=pool,
            warmup_started=_day(str(options["warmup_start"])),
            schedule=schedule,
            check_dns=not options["no_dns_check"],
        )
        self.stdout.write(f"{ip.address} ({ip.ehlo_name}) in pool {pool.name}: {ip.dns_detail}")

    def _ip(self, positional: list[str]) -> SendingIp:
        (address, *_) = self._need(positional, 1, "the address")
        ip = SendingIp.objects.filter(address=address).first()
        if ip is None:
            raise CommandError(f"no sending IP {address}")
        return ip

    def do_check(self, positional: list[str], options: dict) -> None:
        ip = ip_dns_recheck(self._ip(positional))
        self.stdout.write(f"{'ok' if ip.dns_ok else 'NOT OK'}: {ip.dns_detail}")
        if not ip.dns_ok:
            raise CommandError("reverse DNS does not match")

    def do_disable(self, positional: list[str], options: dict) -> None:
        SendingIp.objects.filter(pk=self._ip(positional).pk).update(enabled=False)

    def do_enable(self, positional: list[str], options: dict) -> None:
        SendingIp.objects.filter(pk=self._ip(positional).pk).update(enabled=True)

    def do_remove(self, positional: list[str], options: dict) -> None:
        ip_remove(self._ip(positional).address)

    def do_clear(self, positional: list[str], options: dict) -> None:
        address, provider = self._need(positional, 2, "the address and the provider")[:2]
        self.stdout.write(f"{provider_state_clear(address, provider)} state(s) lifted")

    def do_resume(self, positional: list[str], options: dict) -> None:
        if not str(options["reason"]).strip():
            raise CommandError("--reason: say why the IP may send again")
        ip = ip_reputation_resume(self._ip(positional).address, actor="operator", reason=str(options["reason"]))
        self.stdout.write(
            f"{ip.address}: {ip.reputation_state} (counting from {ip.reputation_since:%Y-%m-%d %H:%M} UTC)"
        )

    def do_providers(self, positional: list[str], options: dict) -> None:
        data = providers()
        if options["json"]:
            self.stdout.write(json.dumps([_provider_json(p) for p in data.providers], indent=2))
            return
        for p in data.providers:
            self.stdout.write(
                f"{p.name:<16} {p.label:<40} mx={','.join(p.mx)} connections={p.max_connections} "
                f"per_connection={p.max_messages_per_connection} per_minute={p.max_messages_per_minute}"
            )
            for r in p.rules:
                self.stdout.write(f"    {r.name:<32} {r.action:<8} codes={list(r.codes)} enhanced={r.enhanced!r}")


def _day(value: str) -> date | None:
    if not value:
        return None
    if value == "today":
        return timezone.now().astimezone(UTC).date()
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError as exc:
        raise CommandError("--warmup-start: YYYY-MM-DD or today") from exc


def _provider_json(p: object) -> dict:
    data = asdict(p)  # type: ignore[call-overload]
    for rule in data["rules"]:
        rule["text"] = rule["text"].pattern if rule["text"] is not None else None
    return data
