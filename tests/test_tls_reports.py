"""TLS-RPT (RFC 8460): yesterday's connection results for a domain that publishes `_smtp._tls`, as the RFC's JSON,
gzip'd, POSTed to an https endpoint (a real loopback HTTPS server) and mailed as a DKIM-signed report message
through Postwerk's own delivery (verified with dkimpy)."""

from __future__ import annotations

import email
import gzip
import json
from datetime import timedelta

import dkim
import pytest
from django.utils import timezone

from sending.delivery.tls_policies import clear_caches
from sending.models import Message, TlsReport, TlsSessionCount
from sending.operations.tls_reports import tls_reports_send
from tests.conftest import add_mx_domain, deliver_queued
from tests.security.pki import make_ca, make_leaf
from tests.servers.http_receiver import HttpReceiver
from tests.test_delivery import dns_txt

DOMAIN = "rpt.example"


@pytest.fixture
def pki(tmp_path, settings):
    ca, ca_key, ca_file = make_ca(tmp_path)
    settings.POSTWERK_EXTRA_CA_FILE = ca_file
    return lambda hostname: make_leaf(tmp_path, ca, ca_key, hostname)


@pytest.fixture
def collector(pki, zone):
    server = HttpReceiver("127.0.0.1", tls=pki("tlsrpt.collector.example")).start()
    zone.add("tlsrpt.collector.example", "A", "127.0.0.1")
    yield server
    server.stop()


def deliver_to(api, mx, zone, count: int = 2) -> None:
    mx("127.0.0.2")  # plain text: opportunistic, no policy
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    for n in range(count):
        body = {"from": "hello@acme.example", "to": [f"u{n}@{DOMAIN}"], "subject": "Hi", "text": "Hello\n"}
        assert api.post("/api/v1/messages", body, format="json").status_code == 202
        deliver_queued()


def as_yesterday() -> None:
    TlsSessionCount.objects.update(day=timezone.now().date() - timedelta(days=1))


def test_report_is_posted_gzipped_in_the_rfc_format_once(api, mx, zone, domain, collector):
    deliver_to(api, mx, zone)
    as_yesterday()
    zone.add(f"_smtp._tls.{DOMAIN}", "TXT", f"v=TLSRPTv1; rua=https://tlsrpt.collector.example:{collector.port}/r")
    assert tls_reports_send() == 1
    (request,) = [r for r in collector.requests if r.method == "POST"]
    assert (request.path, request.headers["content-type"]) == ("/r", "application/tlsrpt+gzip")
    report = json.loads(gzip.decompress(request.body))
    day = (timezone.now().date() - timedelta(days=1)).isoformat()
    assert report["date-range"] == {"start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"}
    assert report["organization-name"] == "mta.postwerk.example"
    assert report["policies"] == [
        {
            "policy": {"policy-type": "no-policy-found", "policy-domain": DOMAIN},
            "summary": {"total-successful-session-count": 2, "total-failure-session-count": 0},
        }
    ]
    assert tls_reports_send() == 0  # the day's report is sent once
    assert len([r for r in collector.requests if r.method == "POST"]) == 1
    assert TlsReport.objects.get().state == TlsReport.State.SENT


def test_failures_are_reported_by_policy_and_result_type(api, mx, zone, domain, collector, settings):
    # The policy host presents a certificate for another name: the fetch fails as sts-webpki-invalid.
    # Delivered at once without the policy (RFC 8461 §3.3), so the report names the host and address connected to.
    settings.POSTWERK_MTA_STS_FETCH_GRACE = 0
    policy_server = HttpReceiver("127.0.0.1", tls=collector.tls).start()
    try:
        deliver_to(api, mx, zone, count=1)
        TlsSessionCount.objects.all().delete()
        zone.add(f"mta-sts.{DOMAIN}", "A", "127.0.0.1")
        zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=1")
        settings.POSTWERK_MTA_STS_PORT = policy_server.port
        clear_caches()
        body = {"from": "hello@acme.example", "to": [f"x@{DOMAIN}"], "subject": "Hi", "text": "Hello\n"}
        assert api.post("/api/v1/messages", body, format="json").status_code == 202
        deliver_queued()
    finally:
        policy_server.stop()
    as_yesterday()
    zone.add(f"_smtp._tls.{DOMAIN}", "TXT", f"v=TLSRPTv1; rua=https://tlsrpt.collector.example:{collector.port}/r")
    tls_reports_send()
    report = json.loads(gzip.decompress(collector.requests[-1].body))
    (policy,) = report["policies"]
    assert policy["policy"]["policy-type"] == "sts"
    assert policy["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 1}
    (failure,) = policy["failure-details"]
    assert (failure["result-type"], failure["receiving-mx-hostname"], failure["receiving-ip"]) == (
        "sts-webpki-invalid",
        f"mx1.{DOMAIN}",
        "127.0.0.2",
    )


def test_report_is_mailed_dkim_signed_through_postwerk(api, mx, zone, domain, settings):
    deliver_to(api, mx, zone)
    as_yesterday()
    settings.POSTWERK_TLSRPT_FROM = "tlsrpt@acme.example"
    reports_mx = mx("127.0.0.3")
    add_mx_domain(zone, "reports.example", "127.0.0.3")
    zone.add(f"_smtp._tls.{DOMAIN}", "TXT", "v=TLSRPTv1; rua=mailto:tls@reports.example")
    assert tls_reports_send() == 1
    message = Message.objects.get(subject__startswith="Report Domain: ")
    deliver_queued()
    (received,) = reports_mx.messages
    assert received.rcpt_tos == ["tls@reports.example"]
    assert dkim.verify(received.data, dnsfunc=dns_txt(zone))
    parsed = email.message_from_bytes(received.data)
    assert parsed["TLS-Report-Domain"] == DOMAIN
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "tlsrpt"
    (attachment,) = [p for p in parsed.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    assert attachment.get_filename().startswith(f"mta.postwerk.example!{DOMAIN}!")
    report = json.loads(gzip.decompress(attachment.get_payload(decode=True)))
    assert report["policies"][0]["summary"]["total-successful-session-count"] == 2
    assert message.organization_id == domain.organization_id


def test_domain_without_tlsrpt_record_gets_nothing(api, mx, zone, domain, collector):
    deliver_to(api, mx, zone, count=1)
    as_yesterday()
    assert tls_reports_send() == 0
    assert TlsReport.objects.get().state == TlsReport.State.NO_POLICY
    assert collector.requests == []
