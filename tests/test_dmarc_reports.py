"""DMARC aggregate reports (issue #28 item 4): the address of the recommended record takes them on the real
inbound listener and keeps them, and a report address at another domain needs (and is checked for) its
`_report._dmarc` authorisation record (RFC 7489 §7.1)."""

from __future__ import annotations

import gzip
import io
import smtplib
import zipfile
from email.message import EmailMessage

import pytest

from sending.domains.service import dns_records
from sending.domains.verification import domain_verify
from sending.feedback.bounce_processing import inbound_process
from sending.models import DmarcReport, Event, InboundMessage, Suppression
from tests.test_bounces import inbound  # noqa: F401 - the real inbound listener fixture

pytestmark = pytest.mark.django_db(transaction=True)

REPORT_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>receiver.example</org_name>
    <email>noreply-dmarc@receiver.example</email>
    <report_id>r-20261207-1</report_id>
    <date_range><begin>1796515200</begin><end>1796601599</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>acme.example</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>127.0.0.1</source_ip><count>3</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>acme.example</header_from></identifiers>
    <auth_results>
      <dkim><domain>acme.example</domain><result>pass</result></dkim>
      <spf><domain>pm-bounces.acme.example</domain><result>pass</result></spf>
    </auth_results>
  </record>
</feedback>
"""


def aggregate_report(to: str, packing: str) -> bytes:
    """A report as receivers mail it (RFC 7489 §7.2.1.1): the XML gzipped or zipped in an attachment."""
    name = "receiver.example!acme.example!1796515200!1796601599"
    if packing == "gzip":
        data, ctype, filename = gzip.compress(REPORT_XML.encode()), ("application", "gzip"), f"{name}.xml.gz"
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{name}.xml", REPORT_XML)
        data, ctype, filename = buffer.getvalue(), ("application", "zip"), f"{name}.zip"
    message = EmailMessage()
    message["From"] = "noreply-dmarc@receiver.example"
    message["To"] = to
    message["Subject"] = "Report Domain: acme.example Submitter: receiver.example Report-ID: r-20261207-1"
    message.set_content("This is an aggregate report from receiver.example.")
    message.add_attachment(data, maintype=ctype[0], subtype=ctype[1], filename=filename)
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def send(address: tuple[str, int], rcpt: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP(*address, timeout=10) as client:
        client.ehlo("mx.receiver.example")
        assert client.mail("noreply-dmarc@receiver.example")[0] == 250
        code, reply = client.rcpt(rcpt)
        if code != 250:
            return code, reply
        return client.data(raw)


def recommended_rua(domain) -> str:  # type: ignore[no-untyped-def]
    value = next(r["value"] for r in dns_records(domain) if r["purpose"] == "dmarc")
    return value.split("rua=mailto:", 1)[1]


@pytest.mark.parametrize("packing", ["gzip", "zip"])
def test_report_to_the_recommended_address_is_stored_before_250_and_kept(inbound, domain, packing):  # noqa: F811
    rua = recommended_rua(domain)
    events = Event.objects.count()
    assert rua == "dmarc-reports@pm-bounces.acme.example"  # the domain's own host: no authorisation needed
    raw = aggregate_report(rua, packing)

    code, reply = send(inbound, rua, raw)

    assert code == 250, reply
    stored = InboundMessage.objects.get(pk=reply.decode().rsplit(" ", 1)[1])
    assert bytes(stored.raw) == raw
    assert (stored.state, stored.type, stored.rcpt_to) == ("received", "dmarc_report", [rua])
    assert inbound_process(stored.pk) == "processed"
    stored.refresh_from_db()
    assert stored.organization_id == domain.organization_id
    report = DmarcReport.objects.get()
    assert stored.result == {
        "kind": "aggregate",
        "org_name": "receiver.example",
        "report_id": "r-20261207-1",
        "begin": "2026-12-06T00:00:00+00:00",
        "end": "2026-12-06T23:59:59+00:00",
        "policy_domain": "acme.example",
        "domain": "acme.example",
        "report": report.pk,
    }
    assert stored.note == "DMARC aggregate report from receiver.example read: 1 rows kept"
    assert bytes(stored.raw) == raw  # the raw report stays with its reading
    assert (report.domain_id, report.organization_id, report.inbound_id) == (
        domain.pk,
        domain.organization_id,
        stored.pk,
    )
    row = report.rows.get()
    assert (row.source_ip, row.count, row.dkim_aligned, row.spf_aligned, row.dmarc_pass, row.disposition) == (
        "127.0.0.1",
        3,
        True,
        True,
        True,
        "none",
    )
    assert row.dkim_results == [{"domain": "acme.example", "selector": "none", "result": "pass"}]
    assert Event.objects.count() == events and not Suppression.objects.exists()  # no bounce, no complaint


def test_report_at_the_platform_host_is_attributed_by_its_policy_domain(inbound, domain):  # noqa: F811
    code, reply = send(inbound, "dmarc-reports@bounces.postwerk.example", aggregate_report("x", "gzip"))

    assert code == 250, reply
    stored = InboundMessage.objects.get(pk=reply.decode().rsplit(" ", 1)[1])
    inbound_process(stored.pk)
    stored.refresh_from_db()
    assert (stored.state, stored.organization_id, stored.result["domain"]) == (
        "processed",
        domain.organization_id,
        "acme.example",
    )


def test_other_addresses_are_still_refused(inbound, domain):  # noqa: F811
    for rcpt in ("dmarc@pm-bounces.acme.example", "dmarc-reports@acme.example", "reports@bounces.postwerk.example"):
        code, reply = send(inbound, rcpt, aggregate_report(rcpt, "gzip"))
        assert (code, reply) == (550, b"5.7.1 Relay denied"), rcpt
    assert not InboundMessage.objects.exists()


def test_an_unreadable_message_to_the_report_address_is_kept_not_read_as_a_bounce(inbound, domain):  # noqa: F811
    raw = b"From: someone@receiver.example\r\nSubject: hello\r\n\r\nnot a report\r\n"
    code, reply = send(inbound, "dmarc-reports@pm-bounces.acme.example", raw)

    assert code == 250, reply
    stored = InboundMessage.objects.get(pk=reply.decode().rsplit(" ", 1)[1])
    assert inbound_process(stored.pk) == "ignored"
    stored.refresh_from_db()
    assert (stored.type, stored.organization_id, stored.result) == (
        "dmarc_report",
        domain.organization_id,
        {"domain": "acme.example"},
    )
    assert stored.note.startswith("a message to the DMARC report address without a readable aggregate or TLS report")
    assert bytes(stored.raw) == raw


# --------------------------------------------------------------------------- a report address elsewhere


def test_external_report_address_needs_the_operators_authorisation_record(zone, domain, settings):
    settings.POSTWERK_DMARC_RUA = "mailto:dmarc@reports.postwerk.example"
    name = "acme.example._report._dmarc.reports.postwerk.example"

    records = [r for r in dns_records(domain) if r["purpose"] == "dmarc_report"]
    checks = {c.name: c for c in domain_verify(domain=domain)}

    assert records == [
        {
            "purpose": "dmarc_report",
            "type": "TXT",
            "name": name,
            "value": "v=DMARC1",
            "note": records[0]["note"],
            "publisher": "operator",
        }
    ]
    assert "*._report._dmarc.reports.postwerk.example" in records[0]["note"]
    assert checks["dmarc_report"].status == "missing"
    assert "platform's operator" in checks["dmarc_report"].message
    assert f'TXT record at {name} with the value "v=DMARC1"' in checks["dmarc_report"].message

    zone.add(name, "TXT", "v=DMARC1")
    checks = {c.name: c for c in domain_verify(domain=domain)}
    assert checks["dmarc_report"].status == "ok"


def test_default_report_address_needs_no_authorisation_record(zone, domain):
    assert [r for r in dns_records(domain) if r["purpose"] == "dmarc_report"] == []
    assert "dmarc_report" not in {c.name for c in domain_verify(domain=domain)}
