"""DMARC aggregate and SMTP TLS reports read and shown (issue #22): reports built the way receivers build them
(gzip and zip XML per RFC 7489 §7.2, gzip'd JSON per RFC 8460), mailed to the real inbound listener, read by
parsedmarc, stored per sender domain, and summarised by the API and the domain's dashboard page."""

from __future__ import annotations

import gzip
import json
import smtplib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create, organization_get_or_create
from sending.feedback.bounce_processing import inbound_process
from sending.models import DmarcReport, DmarcReportRow, Domain, InboundMessage
from tests.test_bounces import inbound  # noqa: F401 - the real inbound listener fixture

pytestmark = pytest.mark.django_db(transaction=True)

RUA = "dmarc-reports@pm-bounces.acme.example"


def record(ip: str, count: int, *, dkim: str, spf: str, envelope: str = "pm-bounces.acme.example") -> str:
    return f"""  <record>
    <row>
      <source_ip>{ip}</source_ip><count>{count}</count>
      <policy_evaluated><disposition>none</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated>
    </row>
    <identifiers><header_from>acme.example</header_from></identifiers>
    <auth_results>
      <dkim><domain>acme.example</domain><selector>pw1</selector><result>{dkim}</result></dkim>
      <spf><domain>{envelope}</domain><result>{spf}</result></spf>
    </auth_results>
  </record>
"""


def aggregate(day: datetime, records: str, *, report_id: str, policy: str = "none") -> bytes:
    """One day's aggregate report (RFC 7489 §7.2.1.1): XML, gzipped, attached to a short message."""
    begin = int(day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
    xml = f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>receiver.example</org_name><email>noreply-dmarc@receiver.example</email>
    <report_id>{report_id}</report_id><date_range><begin>{begin}</begin><end>{begin + 86399}</end></date_range>
  </report_metadata>
  <policy_published><domain>acme.example</domain><adkim>r</adkim><aspf>r</aspf><p>{policy}</p><pct>100</pct></policy_published>
{records}</feedback>
"""
    message = EmailMessage()
    message["From"] = "noreply-dmarc@receiver.example"
    message["To"] = RUA
    message["Subject"] = f"Report Domain: acme.example Submitter: receiver.example Report-ID: {report_id}"
    message.set_content("This is an aggregate report from receiver.example.")
    name = f"receiver.example!acme.example!{begin}!{begin + 86399}.xml.gz"
    message.add_attachment(gzip.compress(xml.encode()), maintype="application", subtype="gzip", filename=name)
    return message.as_bytes().replace(b"\n", b"\r\n")


def tls_report() -> bytes:
    """An SMTP TLS report (RFC 8460 §4.4): the JSON gzipped as application/tlsrpt+gzip."""
    report = {
        "organization-name": "Receiver Inc.",
        "date-range": {"start-datetime": "2026-12-06T00:00:00Z", "end-datetime": "2026-12-06T23:59:59Z"},
        "contact-info": "tlsrpt@receiver.example",
        "report-id": "2026-12-06T00:00:00Z_acme.example",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.acme.example", "max_age: 86400"],
                    "policy-domain": "acme.example",
                    "mx-host": ["mx.acme.example"],
                },
                "summary": {"total-successful-session-count": 10, "total-failure-session-count": 2},
                "failure-details": [
                    {
                        "result-type": "certificate-expired",
                        "sending-mta-ip": "127.0.0.9",
                        "receiving-mx-hostname": "mx.acme.example",
                        "failed-session-count": 2,
                    }
                ],
            }
        ],
    }
    message = EmailMessage()
    message["From"] = "tlsrpt@receiver.example"
    message["To"] = RUA
    message["Subject"] = "Report Domain: acme.example Submitter: receiver.example Report-ID: <2026-12-06@receiver>"
    message["TLS-Report-Domain"] = "acme.example"
    message["TLS-Report-Submitter"] = "receiver.example"
    message.set_content("This is an aggregate TLS report from receiver.example.")
    message.add_attachment(
        gzip.compress(json.dumps(report).encode()),
        maintype="application",
        subtype="tlsrpt+gzip",
        filename="receiver.example!acme.example!1796515200!1796601599!001.json.gz",
    )
    return message.as_bytes().replace(b"\n", b"\r\n")


def deliver(address: tuple[str, int], raw: bytes) -> InboundMessage:
    with smtplib.SMTP(*address, timeout=10) as client:
        client.ehlo("mx.receiver.example")
        code, reply = client.sendmail("noreply-dmarc@receiver.example", [RUA], raw) or (250, b"")
    stored = InboundMessage.objects.get(raw=raw)
    inbound_process(stored.pk)
    stored.refresh_from_db()
    return stored


@pytest.fixture
def sending_ips(settings):
    settings.POSTWERK_SENDING_IPS = ["127.0.0.1"]


def test_report_rows_are_kept_with_reverse_names_and_platform_sources(inbound, domain, zone, sending_ips):  # noqa: F811
    zone.add("77.0.0.127.in-addr.arpa", "PTR", "mailer.elsewhere.example.")
    day = datetime.now(UTC) - timedelta(days=1)
    raw = aggregate(
        day,
        record("127.0.0.1", 90, dkim="pass", spf="pass") + record("127.0.0.77", 10, dkim="fail", spf="fail"),
        report_id="r-1",
    )

    stored = deliver(inbound, raw)

    assert stored.state == "processed"
    assert stored.note == "DMARC aggregate report from receiver.example read: 2 rows kept"
    rows = {r.source_ip: r for r in DmarcReportRow.objects.all()}
    assert (rows["127.0.0.1"].from_platform, rows["127.0.0.1"].dmarc_pass, rows["127.0.0.1"].count) == (True, True, 90)
    assert (rows["127.0.0.77"].from_platform, rows["127.0.0.77"].dmarc_pass) == (False, False)
    assert rows["127.0.0.77"].reverse_name == "mailer.elsewhere.example"
    assert rows["127.0.0.1"].reverse_name == ""  # no PTR in the zone


def test_a_report_sent_twice_is_counted_once(inbound, domain, sending_ips):  # noqa: F811
    day = datetime.now(UTC) - timedelta(days=1)
    first = deliver(inbound, aggregate(day, record("127.0.0.1", 5, dkim="pass", spf="pass"), report_id="r-same"))
    again = aggregate(day, record("127.0.0.1", 5, dkim="pass", spf="pass"), report_id="r-same")
    second = deliver(inbound, again.replace(b"This is an aggregate", b"This is again an aggregate"))

    assert (first.state, second.state) == ("processed", "ignored")
    assert second.note == "aggregate report r-same from receiver.example was kept before; not counted twice"
    assert DmarcReport.objects.count() == 1
    assert DmarcReportRow.objects.get().count == 5


def test_tls_report_is_read_and_summarised(inbound, domain, api):  # noqa: F811
    stored = deliver(inbound, tls_report())

    assert stored.state == "processed"
    report = DmarcReport.objects.get()
    assert (report.kind, report.reporter, report.report_id) == (
        "tls",
        "Receiver Inc.",
        "2026-12-06T00:00:00Z_acme.example",
    )
    body = api.get(f"/api/v1/domains/{domain.pk}/dmarc-reports").json()
    assert body["tls"] == [
        {"policy_type": "sts", "successful": 10, "failed": 2, "failures": {"certificate-expired": 2}}
    ]


def test_api_gives_sources_daily_rates_and_advice(inbound, domain, api, sending_ips):  # noqa: F811
    day = datetime.now(UTC) - timedelta(days=1)
    deliver(
        inbound,
        aggregate(
            day,
            record("127.0.0.1", 90, dkim="pass", spf="pass") + record("127.0.0.77", 10, dkim="fail", spf="fail"),
            report_id="r-1",
        ),
    )

    response = api.get(f"/api/v1/domains/{domain.pk}/dmarc-reports")

    assert response.status_code == 200
    body = response.json()
    assert (body["domain"], body["days"], body["messages"], body["passed"], body["pass_rate"]) == (
        "acme.example",
        30,
        100,
        90,
        0.9,
    )
    assert [(s["source_ip"], s["messages"], s["dmarc_pass"], s["from_platform"]) for s in body["sources"]] == [
        ("127.0.0.1", 90, 90, True),
        ("127.0.0.77", 10, 0, False),
    ]
    assert body["daily"] == [{"day": day.date().isoformat(), "messages": 100, "passed": 90, "pass_rate": 0.9}]
    assert body["advice"] == {
        "current": "none",
        "next": "quarantine",
        "safe": False,
        "reason": "Reports cover 2 of the 14 days needed to judge; keep p=none and look again later.",
    }
    assert [r["report_id"] for r in body["reports"]] == ["r-1"]


def test_advice_says_safe_after_two_weeks_of_passing_mail_and_names_failing_sources(domain, api, sending_ips):
    today = datetime.now(UTC)
    for n in range(15):
        raw = aggregate(
            today - timedelta(days=n),
            record("127.0.0.1", 100, dkim="pass", spf="pass") + record("127.0.0.88", 1, dkim="fail", spf="fail"),
            report_id=f"d-{n}",
        )
        stored = InboundMessage.objects.create(raw=raw, size=len(raw), rcpt_to=[RUA], type="dmarc_report")
        assert inbound_process(stored.pk) == "processed"

    advice = api.get(f"/api/v1/domains/{domain.pk}/dmarc-reports").json()["advice"]

    assert advice == {
        "current": "none",
        "next": "quarantine",
        "safe": True,
        "reason": "99.0% of 1515 messages over 15 days pass DMARC: p=quarantine is safe; what fails is forwarding "
        "or spoofing.",
    }

    raw = aggregate(today, record("127.0.0.88", 500, dkim="fail", spf="fail"), report_id="d-bad")
    stored = InboundMessage.objects.create(raw=raw, size=len(raw), rcpt_to=[RUA], type="dmarc_report")
    inbound_process(stored.pk)
    advice = api.get(f"/api/v1/domains/{domain.pk}/dmarc-reports").json()["advice"]
    assert advice["safe"] is False
    assert advice["reason"] == (
        "74.4% of the mail passes DMARC, below 98%: authenticate or retire the senders that fail "
        "(127.0.0.88 (no reverse name)) before p=quarantine."
    )


def test_api_is_scoped_and_checks_days(domain, api):
    other, _ = organization_get_or_create(name="Other")
    other_key = api_key_create(organization=other, name="k")[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")

    assert client.get(f"/api/v1/domains/{domain.pk}/dmarc-reports").status_code == 404
    bad = api.get(f"/api/v1/domains/{domain.pk}/dmarc-reports?days=0")
    assert bad.status_code == 400
    assert bad.json()["fields"] == {"days": ["days must be a whole number from 1 to 366."]}
    assert Domain.objects.count() == 1
