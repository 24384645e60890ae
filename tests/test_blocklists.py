"""Blocklist monitoring against zones served by the loopback DNS server."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from accounts.services import organization_get_or_create
from sending.models import BlocklistListing, Event, EventType
from sending.reputation.blocklists import ERROR, LISTED, blocklists_check, listings_for, query_name
from tests.conftest import verified_domain

pytestmark = pytest.mark.django_db

LISTED_IP, CLEAN_IP = "127.0.0.10", "127.0.0.11"


@pytest.fixture
def zones(settings, zone):
    settings.POSTWERK_SENDING_IPS = [LISTED_IP, CLEAN_IP]
    settings.POSTWERK_DNSBL_ZONES = ["bl.test"]
    settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES = ["dbl.test"]
    zone.add("10.0.0.127.bl.test", "A", "127.0.0.2")
    zone.add("10.0.0.127.bl.test", "TXT", "Listed: see https://bl.test/lookup")
    return zone


def by_target() -> dict[str, BlocklistListing]:
    return {row.target: row for row in BlocklistListing.objects.all()}


def events(kind: str) -> list[Event]:
    return list(Event.objects.filter(type=kind).order_by("id"))


def test_query_names_reverse_ipv4_octets_and_ipv6_nibbles():
    assert query_name("ip", "192.0.2.99", "zen.spamhaus.org") == "99.2.0.192.zen.spamhaus.org"
    assert query_name("ip", "2001:db8::1", "bl.test.") == (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"
    )
    assert query_name("domain", "acme.example", "dbl.spamhaus.org") == "acme.example.dbl.spamhaus.org"


def test_listed_and_clean_ip_and_domain_with_events_on_change_only(zones, organization, domain):
    zones.add("acme.example.dbl.test", "A", "127.0.1.2")
    other_org, _ = organization_get_or_create(name="Other")

    blocklists_check()

    rows = by_target()
    assert rows[LISTED_IP].listed and rows[LISTED_IP].answer == ["127.0.0.2"]
    assert rows[LISTED_IP].reason == "Listed: see https://bl.test/lookup"
    assert rows[LISTED_IP].listed_since is not None
    assert not rows[CLEAN_IP].listed and rows[CLEAN_IP].checked_at is not None
    assert rows["acme.example"].listed and rows["acme.example"].domain == domain
    listed = events(EventType.BLOCKLIST_LISTED)
    # The IP is everyone's problem; the domain only its owner's.
    assert sorted((e.organization_id, e.details["target"]) for e in listed) == sorted(
        [(organization.pk, LISTED_IP), (other_org.pk, LISTED_IP), (organization.pk, "acme.example")]
    )
    assert [e.domain_id for e in listed if e.details["target"] == "acme.example"] == [domain.pk]

    blocklists_check()  # no change, no event
    assert len(events(EventType.BLOCKLIST_LISTED)) == 3

    zones.remove("10.0.0.127.bl.test")
    blocklists_check()
    assert not by_target()[LISTED_IP].listed and by_target()[LISTED_IP].listed_since is None
    delisted = events(EventType.BLOCKLIST_DELISTED)
    assert sorted(e.organization_id for e in delisted) == sorted([organization.pk, other_org.pk])


def test_refused_query_and_dns_failure_are_errors_that_change_nothing(zones, organization):
    blocklists_check()
    assert by_target()[LISTED_IP].listed

    # Spamhaus's "public resolver / over the limit" answer is not a listing, and not a delisting either.
    zones.remove("10.0.0.127.bl.test")
    zones.add("10.0.0.127.bl.test", "A", "127.255.255.254")
    zones.add("11.0.0.127.bl.test", "A", "127.255.255.254")
    results = {row.target: answer for row, answer in blocklists_check()}
    assert results[LISTED_IP].status == ERROR and results[CLEAN_IP].status == ERROR
    rows = by_target()
    assert rows[LISTED_IP].listed and "refused" in rows[LISTED_IP].error
    assert not rows[CLEAN_IP].listed
    assert not events(EventType.BLOCKLIST_DELISTED)

    zones.servfail("10.0.0.127.bl.test")
    assert {row.target: a.status for row, a in blocklists_check()}[LISTED_IP] == ERROR
    assert by_target()[LISTED_IP].listed
    assert not events(EventType.BLOCKLIST_DELISTED)


def test_listings_for_shows_platform_ips_and_only_the_callers_domains_listed_first(zones, organization, domain):
    other_org, _ = organization_get_or_create(name="Other")
    verified_domain(zones, other_org, "other.example")
    zones.add("other.example.dbl.test", "A", "127.0.1.2")
    blocklists_check()

    mine = listings_for(organization.pk)
    assert [(r.target, r.listed) for r in mine] == [(LISTED_IP, True), ("acme.example", False), (CLEAN_IP, False)]
    assert ("other.example", True) in [(r.target, r.listed) for r in listings_for(other_org.pk)]


def test_check_blocklists_command_prints_json(zones, organization):
    out = StringIO()
    call_command("check_blocklists", "--json", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(x["target"], x["status"]) for x in lines} == {(LISTED_IP, LISTED), (CLEAN_IP, "clear")}
