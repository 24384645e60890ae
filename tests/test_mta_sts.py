"""MTA-STS (RFC 8461) with real parts: the policy served over HTTPS by a loopback server whose certificate comes
from a test CA trusted only through POSTWERK_EXTRA_CA_FILE, recipient MX hosts with and without valid
certificates, and the loopback DNS server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mail.tls_policy.mta_sts import PolicyError, mx_matches, parse_policy, record_id
from sending.delivery.sweep import sweep
from sending.delivery.tls_policies import clear_caches
from sending.models import DestinationState, Event, EventType, MtaStsPolicy, Recipient, RecipientState
from tests.conftest import add_mx_domain, deliver_queued
from tests.security.pki import make_ca, make_leaf
from tests.servers import make_self_signed
from tests.servers.http_receiver import HttpReceiver

DOMAIN = "sts.example"
POLICY_PATH = "/.well-known/mta-sts.txt"


def policy_text(mode: str = "enforce", mx: tuple[str, ...] = ("mx1.sts.example",), max_age: int = 86400) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *[f"mx: {m}" for m in mx], f"max_age: {max_age}"]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture
def pki(tmp_path, settings):
    ca, ca_key, ca_file = make_ca(tmp_path)
    settings.POSTWERK_EXTRA_CA_FILE = ca_file

    def issue(hostname: str, **kwargs: object) -> tuple[str, str]:
        return make_leaf(tmp_path, ca, ca_key, hostname, **kwargs)

    return issue


@pytest.fixture
def sts_server(pki, zone, settings):
    """https://mta-sts.sts.example (127.0.0.1, a free port) serving an enforce policy for mx1.sts.example."""
    server = HttpReceiver("127.0.0.1", tls=pki(f"mta-sts.{DOMAIN}")).start()
    server.pages[POLICY_PATH] = (200, "text/plain", policy_text())
    settings.POSTWERK_MTA_STS_PORT = server.port
    zone.add(f"mta-sts.{DOMAIN}", "A", "127.0.0.1")
    zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=20261207")
    yield server
    server.stop()


def send(api, to: str = f"jane@{DOMAIN}") -> str:
    body = {"from": "hello@acme.example", "to": [to], "subject": "Hi", "text": "Hello\n"}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def last_attempt(address: str = f"jane@{DOMAIN}") -> Event:
    return Event.objects.filter(recipient__address=address).exclude(type__in=["queued", "sent"]).latest("id")


def policy_fetches(server: HttpReceiver) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path == POLICY_PATH)


# --- parsing (RFC 8461 §3) ------------------------------------------------------------------------------------


def test_policy_parses_lines_and_ignores_unknown_keys():
    policy = parse_policy(
        "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\nx: y\n"
    )
    assert (policy.mode, policy.max_age, policy.mx) == ("enforce", 604800, ("mail.example.com", "*.example.net"))


@pytest.mark.parametrize(
    "text",
    [
        "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.example\n",
        "<html>not a policy</html>",
    ],
    ids=["version", "mode", "no-mx", "no-max-age", "html"],
)
def test_bad_policies_are_refused(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_txt_record_needs_exactly_one_sts_record():
    assert record_id(["v=spf1 -all", "v=STSv1; id=abc123;"]) == "abc123"
    with pytest.raises(PolicyError):
        record_id(["v=STSv1; id=a", "v=STSv1; id=b"])
    with pytest.raises(PolicyError):
        record_id(["v=STSv1; id=not-alnum!"])


def test_mx_wildcard_matches_one_label_only():
    assert mx_matches("*.example.net", "mx1.example.net")
    assert not mx_matches("*.example.net", "a.mx1.example.net")
    assert not mx_matches("*.example.net", "example.net")
    assert mx_matches("mail.example.com", "MAIL.example.com.")


# --- enforce ---------------------------------------------------------------------------------------------------


def test_enforce_delivers_over_verified_tls_and_fetches_the_policy_once(api, zone, mx, domain, pki, sts_server):
    sink = mx("127.0.0.2", tls_cert=pki(f"mx1.{DOMAIN}"))
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    message_id = send(api)
    deliver_queued()
    assert [m.tls for m in sink.messages] == [True]
    event = last_attempt()
    assert event.type == EventType.DELIVERED
    assert event.details["tls_policy"] == {"policy": "mta-sts-enforce", "result": "success", "policy_id": "20261207"}
    # Another worker process (no in-process memory) uses the shared cache: still one fetch.
    clear_caches()
    send(api, f"joe@{DOMAIN}")
    deliver_queued()
    assert len(sink.messages) == 2
    assert policy_fetches(sts_server) == 1
    row = MtaStsPolicy.objects.get(domain=DOMAIN)
    assert (row.mode, row.mx, row.max_age, row.policy_id) == ("enforce", [f"mx1.{DOMAIN}"], 86400, "20261207")
    # The API shows it with the attempt.
    detail = api.get(f"/api/v1/messages/{message_id}").json()
    delivered = [e for e in detail["recipients"][0]["events"] if e["type"] == "delivered"]
    assert delivered[0]["details"]["tls_policy"]["policy"] == "mta-sts-enforce"


def test_new_policy_id_is_fetched_again(api, zone, mx, domain, pki, sts_server):
    mx("127.0.0.2", tls_cert=pki(f"mx1.{DOMAIN}"))
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    zone.remove(f"_mta-sts.{DOMAIN}", "TXT")
    zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=2")
    sts_server.pages[POLICY_PATH] = (200, "text/plain", policy_text(mode="testing"))
    clear_caches()
    send(api, f"joe@{DOMAIN}")
    deliver_queued()
    assert policy_fetches(sts_server) == 2
    assert MtaStsPolicy.objects.get(domain=DOMAIN).mode == "testing"
    assert last_attempt(f"joe@{DOMAIN}").details["tls_policy"]["policy"] == "mta-sts-testing"


def test_enforce_never_sends_in_plain_text_to_an_mx_without_starttls(api, zone, mx, domain, sts_server):
    sink = mx("127.0.0.2")  # no certificate: no STARTTLS offered
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    assert sink.messages == []
    recipient = Recipient.objects.get()
    assert (recipient.state, recipient.last_code, recipient.last_enhanced) == (RecipientState.DEFERRED, 451, "4.7.4")
    assert "does not offer STARTTLS" in recipient.last_text
    policy = last_attempt().details["tls_policy"]
    assert (policy["policy"], policy["failure"]) == ("mta-sts-enforce", "starttls-not-supported")


@pytest.mark.parametrize(
    ("leaf", "failure"),
    [
        ({"hostname": "other.example"}, "certificate-host-mismatch"),
        ({"hostname": f"mx1.{DOMAIN}", "expired": True}, "certificate-expired"),
        (None, "certificate-not-trusted"),
    ],
    ids=["wrong-name", "expired", "self-signed"],
)
def test_enforce_defers_when_the_certificate_is_not_valid_for_the_mx(
    api, zone, mx, domain, pki, sts_server, tmp_path, leaf, failure
):
    cert = make_self_signed(tmp_path / "self", f"mx1.{DOMAIN}") if leaf is None else pki(**leaf)
    sink = mx("127.0.0.2", tls_cert=cert)
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    assert sink.messages == []
    recipient = Recipient.objects.get()
    assert (recipient.state, recipient.last_enhanced) == (RecipientState.DEFERRED, "4.7.5")
    policy = last_attempt().details["tls_policy"]
    assert (policy["policy"], policy["result"], policy["failure"]) == ("mta-sts-enforce", "failure", failure)


def test_enforce_skips_mx_hosts_the_policy_does_not_name(api, zone, mx, domain, pki, sts_server):
    sts_server.pages[POLICY_PATH] = (200, "text/plain", policy_text(mx=("mx2.sts.example",)))
    first = mx("127.0.0.2", tls_cert=pki(f"mx1.{DOMAIN}"))
    second = mx("127.0.0.3", tls_cert=pki(f"mx2.{DOMAIN}"))
    add_mx_domain(zone, DOMAIN, "127.0.0.2", "127.0.0.3")
    send(api)
    deliver_queued()
    assert (len(first.messages), len(second.messages), first.connections) == (0, 1, 0)
    assert last_attempt().details["mx_host"] == f"mx2.{DOMAIN}"


def test_testing_mode_delivers_and_reports_what_enforce_would_refuse(api, zone, mx, domain, sts_server):
    sts_server.pages[POLICY_PATH] = (200, "text/plain", policy_text(mode="testing"))
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    assert [m.tls for m in sink.messages] == [False]
    event = last_attempt()
    assert event.type == EventType.DELIVERED
    policy = event.details["tls_policy"]
    assert (policy["policy"], policy["result"], policy["failure"]) == (
        "mta-sts-testing",
        "failure",
        "starttls-not-supported",
    )


# --- failures never downgrade ---------------------------------------------------------------------------------


def test_fetch_failure_keeps_the_cached_enforce_policy_and_defers_with_the_reason(
    api, zone, mx, domain, pki, sts_server, tmp_path
):
    sink = mx("127.0.0.2", tls_cert=pki(f"mx1.{DOMAIN}"))
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    assert len(sink.messages) == 1
    # An attacker (or an outage) changes the id and breaks the policy fetch, and the MX now answers in plain text.
    zone.remove(f"_mta-sts.{DOMAIN}", "TXT")
    zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=attack")
    sts_server.pages[POLICY_PATH] = (500, "text/plain", b"oops")
    sink.stop()
    plain = mx("127.0.0.2")
    clear_caches()
    send(api, f"joe@{DOMAIN}")
    deliver_queued()
    assert plain.messages == []
    joe = Recipient.objects.get(address=f"joe@{DOMAIN}")
    assert joe.state == RecipientState.DEFERRED
    assert "the cached MTA-STS policy id 20261207 applies" in joe.last_text
    assert "HTTP 500" in joe.last_text
    policy = last_attempt(f"joe@{DOMAIN}").details["tls_policy"]
    assert policy["sts_problem"]["failure"] == "sts-policy-fetch-error"
    assert policy["policy"] == "mta-sts-enforce"


def test_txt_record_removed_keeps_the_cached_policy_until_it_expires(api, zone, mx, domain, pki, sts_server):
    sink = mx("127.0.0.2", tls_cert=pki(f"mx1.{DOMAIN}"))
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    zone.remove(f"_mta-sts.{DOMAIN}", "TXT")
    sink.stop()
    plain = mx("127.0.0.2")
    clear_caches()
    send(api, f"joe@{DOMAIN}")
    deliver_queued()
    assert plain.messages == []
    assert Recipient.objects.get(address=f"joe@{DOMAIN}").state == RecipientState.DEFERRED


def test_no_policy_ever_fetched_waits_with_the_reason_then_goes_as_without_a_policy(
    api, zone, mx, domain, sts_server, settings
):
    # The domain publishes _mta-sts but its policy cannot be fetched: the mail is not silently sent as if there
    # were no policy; it waits, the fetch error as the reason, for POSTWERK_MTA_STS_FETCH_GRACE.
    sts_server.pages[POLICY_PATH] = (500, "text/plain", b"oops")
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    assert sink.messages == []
    jane = Recipient.objects.get(address=f"jane@{DOMAIN}")
    assert jane.state == RecipientState.DEFERRED
    assert f"MTA-STS policy of {DOMAIN} could not be fetched" in jane.last_text
    assert "HTTP 500" in jane.last_text
    assert "MTA-STS (RFC 8461) policy published but not fetched" in jane.last_text
    assert "then delivering as if the domain published none (RFC 8461 §3.3)" in jane.last_text
    policy = last_attempt().details["tls_policy"]
    assert policy["sts_problem"]["failure"] == "sts-policy-fetch-error"

    # Still failing once the grace has passed (and the fetch may be tried again): RFC 8461 §3.3, as if none.
    past = timezone.now() - timedelta(seconds=settings.POSTWERK_MTA_STS_FETCH_GRACE + 1)
    MtaStsPolicy.objects.filter(domain=DOMAIN).update(failing_since=past, failed_at=past)
    Recipient.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    DestinationState.objects.update(backoff_until=None)  # the deferral backed the destination off for a while
    clear_caches()
    assert sweep().enqueued == 1
    deliver_queued()
    assert len(sink.messages) == 1
    assert last_attempt().details["tls_policy"]["policy"] == "opportunistic"
    assert policy_fetches(sts_server) == 2
    # A success ends the failing spell.
    sts_server.pages[POLICY_PATH] = (200, "text/plain", policy_text(mode="testing"))
    MtaStsPolicy.objects.filter(domain=DOMAIN).update(failed_at=past)
    clear_caches()
    send(api, f"joe@{DOMAIN}")
    deliver_queued()
    assert MtaStsPolicy.objects.get(domain=DOMAIN).failing_since is None


def test_no_policy_ever_fetched_and_no_grace_means_opportunistic_delivery_with_the_fetch_error_reported(
    api, zone, mx, domain, sts_server, settings
):
    settings.POSTWERK_MTA_STS_FETCH_GRACE = 0
    sts_server.pages[POLICY_PATH] = (404, "text/plain", b"")
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    send(api)
    deliver_queued()
    assert len(sink.messages) == 1  # RFC 8461 §3.3: no valid cached policy, so as if none were published
    policy = last_attempt().details["tls_policy"]
    assert policy["policy"] == "opportunistic"
    assert policy["sts_problem"]["failure"] == "sts-policy-fetch-error"
    # The failure is remembered across processes: no fetch per message.
    clear_caches()
    send(api, f"joe@{DOMAIN}")
    deliver_queued()
    assert policy_fetches(sts_server) == 1


def test_policy_host_certificate_not_trusted_is_a_webpki_failure(api, zone, mx, domain, settings, tmp_path):
    settings.POSTWERK_MTA_STS_FETCH_GRACE = 0  # deliver at once, as RFC 8461 §3.3 says, to see what is reported
    server = HttpReceiver("127.0.0.1", tls=make_self_signed(tmp_path / "sts", f"mta-sts.{DOMAIN}")).start()
    try:
        server.pages[POLICY_PATH] = (200, "text/plain", policy_text())
        settings.POSTWERK_MTA_STS_PORT = server.port
        zone.add(f"mta-sts.{DOMAIN}", "A", "127.0.0.1")
        zone.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=1")
        sink = mx("127.0.0.2")
        add_mx_domain(zone, DOMAIN, "127.0.0.2")
        send(api)
        deliver_queued()
    finally:
        server.stop()
    assert len(sink.messages) == 1
    assert last_attempt().details["tls_policy"]["sts_problem"]["failure"] == "sts-webpki-invalid"
    assert MtaStsPolicy.objects.get(domain=DOMAIN).mode == ""
