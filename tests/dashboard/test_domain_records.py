"""The domain page's records (issue #28): none on a platform name that is not a real domain, and who publishes
a record that the platform's operator must publish."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from sending.feedback.bounce_processing import inbound_process
from sending.models import InboundMessage
from tests.test_dmarc_report_results import RUA, aggregate, record

pytestmark = pytest.mark.django_db


def domain_page(client, organization, domain) -> str:  # type: ignore[no-untyped-def]
    response = client.get(reverse("dashboard:domain", args=[organization.pk, domain.pk]))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_domain_page_shows_no_records_on_localhost_and_names_the_settings(owner_client, organization, domain, settings):
    settings.POSTWERK_RETURN_PATH_DOMAIN = "localhost"
    settings.POSTWERK_INBOUND_MX_HOSTS = ["localhost"]
    settings.POSTWERK_SPF_INCLUDE = "_spf.localhost"

    page = domain_page(owner_client, organization, domain)

    assert "Postwerk cannot recommend DNS records" in page
    assert "POSTWERK_RETURN_PATH_DOMAIN is 'localhost'" in page and "Set POSTWERK_HOSTNAME" in page
    assert "pm-bounces.acme.example" not in page.split("DNS records to publish")[1].split("Checks")[0]
    assert "postwerk-verification=" not in page


def test_domain_page_says_the_operator_publishes_the_report_authorisation(owner_client, organization, domain, settings):
    settings.POSTWERK_DMARC_RUA = "mailto:dmarc@reports.postwerk.example"

    page = domain_page(owner_client, organization, domain)

    assert "acme.example._report._dmarc.reports.postwerk.example" in page
    assert "Platform operator publishes" in page
    assert "Postwerk cannot recommend DNS records" not in page


def test_domain_page_shows_dmarc_report_sources_and_advice(owner_client, organization, domain, settings):
    settings.POSTWERK_SENDING_IPS = ["127.0.0.1"]
    raw = aggregate(
        datetime.now(UTC) - timedelta(days=1),
        record("127.0.0.1", 90, dkim="pass", spf="pass") + record("127.0.0.77", 10, dkim="fail", spf="fail"),
        report_id="r-1",
    )
    stored = InboundMessage.objects.create(raw=raw, size=len(raw), rcpt_to=[RUA], type="dmarc_report")
    assert inbound_process(stored.pk) == "processed"

    page = domain_page(owner_client, organization, domain)

    assert "100</strong> messages reported, <strong>90</strong> passed DMARC" in page
    assert "Reports cover 2 of the 14 days needed to judge; keep p=none and look again later." in page
    assert "<td>127.0.0.77</td><td>—</td><td>10</td>" in page
    assert page.count("not Postwerk") == 1
