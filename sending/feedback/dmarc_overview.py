"""What a domain's DMARC and TLS reports say, read for a person: who sends as the domain, how much passes, day by
day, and whether it is safe to tighten the policy. The API and the dashboard show the same answer."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from sending.models import DmarcReport, DmarcReportRow, Domain

# Moving to an enforcing policy is safe once this share of the domain's mail passes DMARC over at least this many
# days of reports: what remains failing is then a handful of forwarders or spoofers, not a forgotten sender.
SAFE_PASS_RATE = 0.98
SAFE_MIN_DAYS = 14
NEXT_POLICY = {"none": "quarantine", "quarantine": "reject"}


@dataclass
class Advice:
    current: str  # the policy the receivers saw published ("" before any report)
    next: str  # the policy to move to ("" when already at reject)
    safe: bool
    reason: str  # for a person


@dataclass
class Overview:
    domain: str
    days: int
    messages: int = 0
    passed: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)
    daily: list[dict[str, Any]] = field(default_factory=list)
    tls: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    advice: Advice | None = None

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["pass_rate"] = round(self.passed / self.messages, 4) if self.messages else None
        return body


def _sources(rows: Any) -> list[dict[str, Any]]:
    grouped = (
        rows.values("source_ip", "reverse_name", "from_platform")
        .annotate(
            messages=Sum("count"),
            dmarc_pass=Sum("count", filter=Q(dmarc_pass=True)),
            dkim_aligned=Sum("count", filter=Q(dkim_aligned=True)),
            spf_aligned=Sum("count", filter=Q(spf_aligned=True)),
            reports=Count("report", distinct=True),
        )
        .order_by("-messages", "source_ip")
    )
    return [
        {
            **row,
            "dmarc_pass": row["dmarc_pass"] or 0,
            "dkim_aligned": row["dkim_aligned"] or 0,
            "spf_aligned": row["spf_aligned"] or 0,
            "pass_rate": round((row["dmarc_pass"] or 0) / row["messages"], 4) if row["messages"] else None,
        }
        for row in grouped
    ]


def _daily(rows: Any) -> list[dict[str, Any]]:
    days = (
        rows.annotate(day=TruncDate("report__begin"))
        .values("day")
        .annotate(messages=Sum("count"), passed=Sum("count", filter=Q(dmarc_pass=True)))
        .order_by("day")
    )
    return [
        {
            "day": row["day"].isoformat(),
            "messages": row["messages"],
            "passed": row["passed"] or 0,
            "pass_rate": round((row["passed"] or 0) / row["messages"], 4) if row["messages"] else None,
        }
        for row in days
    ]


def _tls(reports: Any) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"successful": 0, "failed": 0, "failures": defaultdict(int)}
    )
    for details in reports.filter(kind=DmarcReport.Kind.TLS).values_list("details", flat=True):
        for policy in details or []:
            entry = totals[str(policy.get("policy_type") or "no-policy-found")]
            entry["successful"] += int(policy.get("successful_session_count") or 0)
            entry["failed"] += int(policy.get("failed_session_count") or 0)
            for failure in policy.get("failure_details") or []:
                entry["failures"][str(failure.get("result_type") or "unknown")] += int(
                    failure.get("failed_session_count") or 0
                )
    return [
        {"policy_type": name, "successful": t["successful"], "failed": t["failed"], "failures": dict(t["failures"])}
        for name, t in sorted(totals.items())
    ]


def _advice(overview: Overview, current: str, first_day: str | None) -> Advice:
    nxt = NEXT_POLICY.get(current, "")
    if not current:
        return Advice(
            "",
            "",
            False,
            "No aggregate report has arrived yet: receivers send them daily once the "
            "DMARC record names this platform's report address.",
        )
    if not nxt:
        return Advice(current, "", False, "The policy is already p=reject: nothing to tighten.")
    covered = (timezone.now().date() - date.fromisoformat(first_day)).days + 1 if first_day else 0
    if covered < SAFE_MIN_DAYS:
        return Advice(
            current,
            nxt,
            False,
            f"Reports cover {covered} of the {SAFE_MIN_DAYS} days needed to judge; "
            f"keep p={current} and look again later.",
        )
    rate = overview.passed / overview.messages if overview.messages else 0.0
    failing = [s for s in overview.sources if not s["from_platform"] and (s["pass_rate"] or 0) < SAFE_PASS_RATE]
    if rate < SAFE_PASS_RATE:
        names = ", ".join(f"{s['source_ip']} ({s['reverse_name'] or 'no reverse name'})" for s in failing[:5])
        return Advice(
            current,
            nxt,
            False,
            f"{rate:.1%} of the mail passes DMARC, below {SAFE_PASS_RATE:.0%}: "
            f"authenticate or retire the senders that fail ({names or 'see the sources'}) before p={nxt}.",
        )
    return Advice(
        current,
        nxt,
        True,
        f"{rate:.1%} of {overview.messages} messages over {covered} days pass DMARC: "
        f"p={nxt} is safe; what fails is forwarding or spoofing.",
    )


def dmarc_overview(domain: Domain, *, days: int = 30) -> Overview:
    """The last ``days`` of reports about ``domain``."""
    since = timezone.now() - timedelta(days=days)
    reports = DmarcReport.objects.filter(domain=domain, begin__gte=since)
    rows = DmarcReportRow.objects.filter(report__in=reports.filter(kind=DmarcReport.Kind.AGGREGATE))
    overview = Overview(domain=domain.name, days=days)
    overview.sources = _sources(rows)
    overview.messages = sum(s["messages"] for s in overview.sources)
    overview.passed = sum(s["dmarc_pass"] for s in overview.sources)
    overview.daily = _daily(rows)
    overview.tls = _tls(reports)
    overview.reports = [
        {
            "id": r.pk,
            "kind": r.kind,
            "reporter": r.reporter,
            "report_id": r.report_id,
            "begin": r.begin.isoformat(),
            "end": r.end.isoformat(),
            "messages": r.messages or 0,
        }
        for r in reports.annotate(messages=Sum("rows__count")).order_by("-begin", "-pk")[:50]
    ]
    latest = reports.filter(kind=DmarcReport.Kind.AGGREGATE).order_by("-begin").values_list("policy", flat=True).first()
    current = str((latest or {}).get("p") or "").lower()
    overview.advice = _advice(overview, current, overview.daily[0]["day"] if overview.daily else None)
    return overview
