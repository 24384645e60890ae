"""Policy lookups are cached, never one HTTPS fetch or DNS query per message (issue 26, "throughput within noise"):
N messages to a destination that publishes MTA-STS (enforce) and DANE, each in a delivery loop of its own as a
worker under load would take them, cost the HTTPS fetches and DNS queries of the first message and nothing more.
Counted at the loopback HTTPS server and the loopback DNS server, not timed.

The delivery thread's CPU per message with the policies on and off is measured here too (time.thread_time around
each loop, recorded with record_property and printed), never asserted: the figures depend on the machine."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sending.delivery.deliver import deliver
from sending.models import Recipient, RecipientState
from tests.security.pki import make_ca, make_leaf
from tests.servers.http_receiver import HttpReceiver
from tests.test_dane import DOMAIN, MX, TLSA_NAME, cert_sha256

pytestmark = pytest.mark.django_db
N = 20


@pytest.fixture
def secured(zone, settings, tmp_path, organization, domain):
    """DOMAIN signed (DANE-TA record for its MX) and publishing an MTA-STS enforce policy on a loopback HTTPS
    server whose CA is trusted through POSTWERK_EXTRA_CA_FILE; the MX's certificate comes from the same CA, so
    both DANE and MTA-STS are satisfied. The caches keep their production settings."""
    settings.POSTWERK_TLS_POLICY_CACHE_SECONDS = 60.0
    settings.POSTWERK_MX_CACHE_MAX_TTL = 3600
    ca, ca_key, ca_file = make_ca(tmp_path)
    settings.POSTWERK_EXTRA_CA_FILE = ca_file
    settings.POSTWERK_DNSSEC_TRUST_ANCHORS = [zone.sign_zone(DOMAIN)]
    zone.add(DOMAIN, "MX", f"10 {MX}.")
    zone.add(MX, "A", "127.0.0.2")
    zone.add(TLSA_NAME, "TLSA", f"2 0 1 {cert_sha256(ca)}")
    zone.add(f"mta-sts.{DOMAIN}", "A", "127.0.0.1")
    zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=20261208")
    web = HttpReceiver("127.0.0.1", tls=make_leaf(tmp_path, ca, ca_key, f"mta-sts.{DOMAIN}")).start()
    body = f"version: STSv1\nmode: enforce\nmx: {MX}\nmax_age: 86400\n".encode()
    web.pages["/.well-known/mta-sts.txt"] = (200, "text/plain", body)
    settings.POSTWERK_MTA_STS_PORT = web.port
    (tmp_path / "mx").mkdir()
    cert_path, key_path = make_leaf(tmp_path / "mx", ca, ca_key, MX)
    with open(cert_path, "ab") as handle:  # the chain carries the CA, where DANE-TA finds its anchor
        handle.write(open(ca_file, "rb").read())
    yield {"web": web, "mx_cert": (cert_path, key_path)}
    web.stop()


def send_one(api, i: int, domain: str) -> str:
    body = {"from": "hello@acme.example", "to": [f"user{i}@{domain}"], "subject": f"#{i}", "text": "Hi\n"}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return str(Recipient.objects.get(message_id=response.json()["id"]).pk)


def deliver_each(api, domain: str, first: int, n: int) -> tuple[float, int]:
    """Send and deliver n messages, one delivery loop each; the delivery thread's CPU seconds for them, and the
    database queries the loops made."""
    cpu, queries = 0.0, 0
    for i in range(first, first + n):
        rid = send_one(api, i, domain)
        with CaptureQueriesContext(connection) as captured:
            start = time.thread_time()
            assert deliver([rid], domain=domain) == 1
            cpu += time.thread_time() - start
        queries += len(captured)
    return cpu, queries


def test_n_messages_cost_the_policy_fetches_and_dns_queries_of_one(api, zone, mx, secured, record_property):
    sink = mx("127.0.0.2", tls_cert=secured["mx_cert"])
    web = secured["web"]

    deliver_each(api, DOMAIN, 0, 1)
    first_queries = Counter((name, qtype) for name, qtype, _ in zone.queries)
    assert len(web.requests) == 1  # the policy, fetched once
    assert first_queries[(TLSA_NAME, "TLSA")] == 1
    assert first_queries[(f"_mta-sts.{DOMAIN}", "TXT")] == 1
    assert first_queries[(DOMAIN, "MX")] == 1

    cpu_on, queries_on = deliver_each(api, DOMAIN, 1, N)

    assert len(web.requests) == 1  # still the one fetch: O(1), not O(N)
    assert Counter((name, qtype) for name, qtype, _ in zone.queries) == first_queries  # not one more DNS query
    assert [m.tls for m in sink.messages] == [True] * (N + 1)
    assert Recipient.objects.filter(state=RecipientState.DELIVERED).count() == N + 1

    # The same N messages to a destination that publishes neither policy (its first message pays its lookups).
    zone.add("plain.example", "MX", "10 mx1.plain.example.")
    zone.add("mx1.plain.example", "A", "127.0.0.2")
    deliver_each(api, "plain.example", 0, 1)
    cpu_off, queries_off = deliver_each(api, "plain.example", 1, N)
    print(
        f"per message: policies on {cpu_on / N * 1000:.2f} ms delivery thread CPU, {queries_on / N:.2f} database "
        f"queries; off {cpu_off / N * 1000:.2f} ms, {queries_off / N:.2f} queries; first message's DNS queries: "
        f"{sorted(first_queries.items())}"
    )
    record_property("cpu_ms_per_message_policies_on", round(cpu_on / N * 1000, 2))
    record_property("cpu_ms_per_message_policies_off", round(cpu_off / N * 1000, 2))
