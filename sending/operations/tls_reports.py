"""TLS-RPT (RFC 8460): every day, for each recipient domain mailed the day before that publishes `_smtp._tls`,
one aggregate report of the connections' results by policy, sent to each of its `rua` destinations: https ones by
POST (application/tlsrpt+gzip), mailto ones as a report message that takes the one accept pipeline and ordinary
delivery (DKIM-signed by POSTWERK_TLSRPT_FROM's domain, like any of its mail). Beat runs it hourly; a day's
report is built once, and destinations that failed are tried again while the day is recent."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from accounts.models import Organization
from mail.addresses import AddressError, Mailbox, parse_mailbox
from mail.tls_policy import records, tlsrpt
from sending.domains.service import sender_domain
from sending.errors import Refused
from sending.intake.accept import Caller, accept
from sending.intake.submission import Prepared, prepared_rows
from sending.models import Domain, TlsReport, TlsSessionCount, uuid7

log = logging.getLogger(__name__)

# Reports for days older than this are no longer retried, and the counts behind them are deleted.
KEEP_DAYS = 3


@dataclass
class ReportSubmission:
    """A TLS report message (sending.intake.accept's Submission): built here, authorised and stored like any."""

    sender: Mailbox
    recipient: Mailbox
    raw: bytes
    subject: str

    def sender_domains(self) -> list[str]:
        return [self.sender.domain]

    def compose(self, caller: Caller, domain: Domain) -> Prepared:
        pk = uuid7()
        message_id = f"<{pk}@{settings.POSTWERK_HOSTNAME}>"
        raw = f"Message-ID: {message_id}\r\n".encode() + self.raw
        return prepared_rows(
            organization=caller.organization,
            domain=domain,
            message_pk=pk,
            message_id=message_id,
            raw=raw,
            mail_from=self.sender.envelope_address,
            subject=self.subject,
            recipients=[("to", self.recipient)],
            smtputf8=False,
            tags=["tlsrpt"],
        )


def tls_reports_send(today: date | None = None) -> int:
    """Build and send the reports that are due; returns how many reports were sent (fully) now."""
    if not settings.POSTWERK_TLSRPT:
        return 0
    today = today or timezone.now().date()
    oldest = today - timedelta(days=KEEP_DAYS)
    TlsSessionCount.objects.filter(day__lt=oldest).delete()
    TlsReport.objects.filter(day__lt=today - timedelta(days=settings.POSTWERK_RETENTION_DAYS)).delete()
    due = (
        TlsSessionCount.objects.filter(day__lt=today, day__gte=oldest)
        .values("day", "domain")
        .annotate(last=Max("id"))
        .order_by("day", "domain")
    )
    sent = 0
    for row in due:
        report = TlsReport.objects.filter(day=row["day"], domain=row["domain"]).first()
        if report is not None and report.state != TlsReport.State.FAILED:
            continue
        sent += report_send(row["domain"], row["day"], report)
    return sent


def report_send(domain: str, day: date, report: TlsReport | None = None) -> int:
    answer = records.txt(f"_smtp._tls.{domain}")
    if answer.error:
        return 0  # nothing known: asked again next hour
    uris = tlsrpt.rua(answer.records)
    if report is None:
        report = TlsReport(day=day, domain=domain, report_id=f"{day.isoformat()}.{domain}@{settings.POSTWERK_HOSTNAME}")
    if not uris:
        report.state = TlsReport.State.NO_POLICY
        report.updated_at = timezone.now()
        report.save()
        return 0
    if not report.report:
        counts = [
            tlsrpt.SessionCount(
                c.policy_type, c.policy, c.result, c.mx_host, c.sending_ip, c.receiving_ip, c.count, c.detail
            )
            for c in TlsSessionCount.objects.filter(day=day, domain=domain).order_by("id")
        ]
        report.report = tlsrpt.build_report(
            domain=domain,
            day=day,
            counts=counts,
            organization=settings.POSTWERK_TLSRPT_ORGANIZATION or settings.POSTWERK_HOSTNAME,
            contact=settings.POSTWERK_TLSRPT_CONTACT or f"postmaster@{settings.POSTWERK_HOSTNAME}",
            report_id=report.report_id,
        )
    data = tlsrpt.gzipped(report.report)
    done = {d["uri"] for d in report.destinations if d.get("ok")}
    destinations = [d for d in report.destinations if d.get("ok")]
    for uri in uris:
        if uri in done:
            continue
        if uri.lower().startswith("https://"):
            ok, detail = tlsrpt.post(uri, data)
        else:
            ok, detail = _mail(uri, domain, day, report.report_id, data)
        destinations.append({"uri": uri, "ok": ok, "detail": detail})
        if not ok:
            log.warning("TLS report for %s (%s) to %s failed: %s", domain, day, uri, detail)
    report.destinations = destinations
    report.attempts += 1
    report.state = TlsReport.State.SENT if all(d["ok"] for d in destinations) else TlsReport.State.FAILED
    report.updated_at = timezone.now()
    report.save()
    return int(report.state == TlsReport.State.SENT)


def _mail(uri: str, domain: str, day: date, report_id: str, data: bytes) -> tuple[bool, str]:
    """Queue the report message (ordinary delivery takes it from there); (queued?, its id or why not)."""
    if not settings.POSTWERK_TLSRPT_FROM:
        return False, "POSTWERK_TLSRPT_FROM is not set: reports cannot be mailed"
    try:
        sender = parse_mailbox(settings.POSTWERK_TLSRPT_FROM)
        recipient = parse_mailbox(tlsrpt.mailto_address(uri))
    except AddressError as exc:
        return False, f"bad address: {exc}"
    organization = _sender_organization(sender.domain)
    if organization is None:
        return False, f"{sender.domain} (POSTWERK_TLSRPT_FROM) is not a sender domain of any organization"
    raw = tlsrpt.report_message(
        sender=sender.address,
        recipient=recipient.address,
        domain=domain,
        submitter=settings.POSTWERK_HOSTNAME,
        day=day,
        report_id=report_id,
        data=data,
    )
    subject = f"Report Domain: {domain} Submitter: {settings.POSTWERK_HOSTNAME} Report-ID: <{report_id}>"
    try:
        (result,) = accept(Caller(organization), [ReportSubmission(sender, recipient, raw, subject)])
    except Refused as exc:
        return False, str(exc)
    if isinstance(result, Refused):
        return False, str(result)
    return True, f"queued as message {result.message.pk}"


def _sender_organization(name: str) -> Organization | None:
    for domain in Domain.objects.filter(name=name).select_related("organization"):
        if sender_domain(domain.organization, name) is not None:
            return domain.organization
    return None
