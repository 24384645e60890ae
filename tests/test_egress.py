"""Egress: sending IPs in pools (source address bound, EHLO name checked against reverse DNS), warm-up allowances
per receiving provider with overflow or waiting, and provider-aware shaping driven by the providers' documented
replies, answered by real loopback MX hosts. Source addresses are 127.0.0.2x; the sinks see them as the peer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.services import api_key_create, organization_get_or_create
from mail.providers import OTHER, ProviderDataError, load
from sending import tasks
from sending.delivery import egress, shaping, throttling
from sending.delivery.deliver import deliver
from sending.delivery.pools import EgressError, ip_add, ip_dns_check, pool_create, schedule_create
from sending.models import (
    DestinationState,
    Event,
    EventType,
    IpDailyUse,
    IpPool,
    IpProviderState,
    Recipient,
    RecipientState,
    SendingIp,
    Suppression,
)
from sending.reputation.blocklists import sending_ips
from tests.conftest import add_mx_domain, verified_domain
from tests.servers.http_receiver import HttpReceiver
from tests.test_webhooks import add_endpoint, bodies, run_webhooks

pytestmark = pytest.mark.django_db

IP1, IP2, IP3 = "127.0.0.21", "127.0.0.22", "127.0.0.23"
DEST = "dest.example"

# Replies as the providers document them (support.google.com/a/answer/3726730; Outlook.com's postmaster
# troubleshooting page; senders.yahooinc.com/smtp-error-codes).
GMAIL_RATE_LIMITED = (
    "421 4.7.28 [127.0.0.21] Our system has detected an unusual rate of unsolicited mail originating from your IP "
    "address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. "
    "Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders "
    "Guidelines. - gsmtp"
)
MICROSOFT_S3150 = (
    "550 5.7.1 Unfortunately, messages from [127.0.0.21] weren't sent. Please contact your Internet service "
    "provider since part of their network is on our block list (S3150). You can also refer your provider to "
    "http://mail.live.com/mail/troubleshooting.aspx#errors."
)
YAHOO_TSS04 = (
    "421 4.7.0 [TSS04] Messages from 127.0.0.21 temporarily deferred due to unexpected volume or user complaints - "
    "4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
)


@pytest.fixture(autouse=True)
def fresh_caches(settings):
    settings.POSTWERK_THROTTLE_RULES = []  # the destination-wide throttle stays out of these tests
    settings.POSTWERK_THROTTLE_CACHE_SECONDS = 0
    for forget in (throttling.rules_forget, egress.pools_forget, shaping.states_forget):
        forget()
    yield
    for forget in (throttling.rules_forget, egress.pools_forget, shaping.states_forget):
        forget()


def publish_ptr(zone, address: str, name: str) -> None:
    """Forward-confirmed reverse DNS for a sending IP, in the loopback DNS server."""
    zone.add(".".join(reversed(address.split("."))) + ".in-addr.arpa", "PTR", name + ".")
    zone.add(name, "A", address)


def add_ip(zone, pool, address: str, name: str, **kwargs):
    publish_ptr(zone, address, name)
    ip = ip_add(address=address, ehlo_name=name, pool=pool, **kwargs)
    egress.pools_forget()
    return ip


def send(api, count: int = 1, domain: str = DEST, sender: str = "hello@acme.example") -> list[str]:
    messages = [{"from": sender, "to": [f"user{i}@{domain}"], "subject": f"#{i}", "text": "Hi"} for i in range(count)]
    response = api.post("/api/v1/messages/batch", {"messages": messages}, format="json")
    assert response.status_code == 200, response.content
    assert all(r["status"] == 202 for r in response.json()["results"]), response.content
    return [str(pk) for pk in Recipient.objects.filter(domain=domain, state="queued").values_list("id", flat=True)]


def peers(sink) -> list[str]:
    return [m.peer[0] for m in sink.messages]


# --- pools and binding -------------------------------------------------------------------------------------


def test_pool_ip_is_the_source_address_and_its_ptr_name_the_ehlo(api, zone, mx, organization):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    pool = pool_create(name="acme", organization=organization)
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")

    ids = send(api, 2)
    assert deliver(ids, domain=DEST) == 2

    assert peers(sink) == [IP1, IP1]
    assert {m.helo for m in sink.messages} == {"out1.postwerk-ips.example"}
    assert set(Recipient.objects.values_list("sending_ip", flat=True)) == {IP1}
    delivered = Event.objects.filter(type=EventType.DELIVERED).first()
    assert delivered.details["sending_ip"] == IP1
    today = timezone.now().astimezone(UTC).date()
    assert IpDailyUse.objects.get(address=IP1, provider=OTHER, day=today).count == 2


def test_without_pools_mail_leaves_as_before(api, zone, mx, organization):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    deliver(send(api, 1), domain=DEST)
    assert peers(sink) == ["127.0.0.1"]
    assert sink.messages[0].helo == "mta.postwerk.example"
    assert Recipient.objects.get().sending_ip == ""
    assert not IpDailyUse.objects.exists()


def test_the_most_specific_pool_wins(zone, organization, domain):
    other_org, _ = organization_get_or_create(name="Other")
    default = pool_create(name="shared", is_default=True)
    org_pool = pool_create(name="acme", organization=organization)
    stream_pool = pool_create(name="acme-bulk", organization=organization, stream="bulk")
    domain_pool = pool_create(name="acme-domain", domain=domain)
    for pool, address in ((default, IP1), (org_pool, IP2), (stream_pool, IP3), (domain_pool, "127.0.0.24")):
        add_ip(zone, pool, address, f"ip-{address.replace('.', '-')}.postwerk-ips.example")

    assert egress.pool_for(organization.pk, domain.pk, "bulk").name == "acme-domain"
    assert egress.pool_for(organization.pk, None, "bulk").name == "acme-bulk"
    assert egress.pool_for(organization.pk, None, "").name == "acme"
    assert egress.pool_for(other_org.pk, None, "bulk").name == "shared"


def test_reverse_dns_must_name_the_ehlo_name_and_resolve_back(zone, organization):
    pool = pool_create(name="acme", organization=organization)
    publish_ptr(zone, IP1, "out1.postwerk-ips.example")
    assert ip_dns_check(IP1, "out1.postwerk-ips.example") == (True, f"{IP1} <-> out1.postwerk-ips.example")

    ok, why = ip_dns_check(IP1, "other.postwerk-ips.example")
    assert not ok and why == f"{IP1}'s reverse DNS names out1.postwerk-ips.example, not other.postwerk-ips.example"
    ok, why = ip_dns_check(IP2, "out2.postwerk-ips.example")
    assert not ok and why.startswith(f"{IP2} has no reverse DNS")
    zone.add("22.0.0.127.in-addr.arpa", "PTR", "out2.postwerk-ips.example.")
    zone.add("out2.postwerk-ips.example", "A", "127.0.0.99")
    ok, why = ip_dns_check(IP2, "out2.postwerk-ips.example")
    assert not ok and why == f"out2.postwerk-ips.example resolves to 127.0.0.99, not {IP2}"

    with pytest.raises(EgressError) as refused:
        ip_add(address=IP2, ehlo_name="out2.postwerk-ips.example", pool=pool)
    assert refused.value.field == "ehlo_name"
    unchecked = ip_add(address=IP2, ehlo_name="out2.postwerk-ips.example", pool=pool, check_dns=False)
    assert unchecked.dns_ok is False


# --- warm-up -------------------------------------------------------------------------------------------------


def test_over_todays_allowance_waits_deferred_until_tomorrow(api, zone, mx, organization):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    schedule = schedule_create(name="gentle", volumes=[2, 4, 8])
    pool = pool_create(name="acme", organization=organization, when_exhausted=IpPool.WhenExhausted.WAIT)
    today = timezone.now().astimezone(UTC).date()
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example", warmup_started=today, schedule=schedule)

    ids = send(api, 3)
    deliver(ids, domain=DEST)

    assert peers(sink) == [IP1, IP1]
    waiting = Recipient.objects.get(state=RecipientState.DEFERRED)
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert waiting.next_attempt_at == tomorrow
    assert waiting.attempts == 0  # nothing was sent: no attempt counted
    event = Event.objects.filter(recipient=waiting).order_by("sequence").last()
    assert event.type == EventType.DEFERRED
    assert event.details["reason"] == "waiting_for_ip"
    assert event.sequence == 2  # queued, deferred: numbered in order
    assert IpDailyUse.objects.get(address=IP1, day=today).count == 2

    # Day 2 of the warm-up allows 4 a day.
    from sending.models import SendingIp

    SendingIp.objects.filter(address=IP1).update(warmup_started=today - timedelta(days=1))
    egress.pools_forget()
    status = api.get("/api/v1/ips").json()["ips"][0]
    assert (status["warmup_day"], status["allowance"], status["used_today"]) == (2, 4, 2)
    Recipient.objects.filter(pk=waiting.pk).update(state=RecipientState.QUEUED)
    deliver([str(waiting.pk)], domain=DEST)
    assert peers(sink) == [IP1, IP1, IP1]


def test_over_the_allowance_overflows_to_a_warm_pool_of_the_same_organization(api, zone, mx, organization):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    new = pool_create(name="acme-new", organization=organization, when_exhausted=IpPool.WhenExhausted.OVERFLOW)
    warm = pool_create(name="acme-warm", organization=organization, stream="legacy")
    shared = pool_create(name="shared", is_default=True)
    today = timezone.now().astimezone(UTC).date()
    add_ip(
        zone,
        new,
        IP1,
        "out1.postwerk-ips.example",
        warmup_started=today,
        schedule=schedule_create(name="one", volumes=[1, 2]),
    )
    add_ip(zone, warm, IP2, "out2.postwerk-ips.example")  # warm: no warm-up date
    add_ip(zone, shared, IP3, "out3.postwerk-ips.example")  # another organization's business: never borrowed

    deliver(send(api, 3), domain=DEST)

    assert sorted(peers(sink)) == [IP1, IP2, IP2]
    assert Recipient.objects.filter(state=RecipientState.DELIVERED).count() == 3


def test_warmup_is_counted_per_receiving_provider(api, zone, mx, organization):
    gmail_sink, other_sink = mx("127.0.0.3"), mx("127.0.0.2")
    zone.add("gmail.example", "MX", "5 gmail-smtp-in.l.google.com.")
    zone.add("gmail-smtp-in.l.google.com", "A", "127.0.0.3")
    add_mx_domain(zone, DEST, "127.0.0.2")
    pool = pool_create(name="acme", organization=organization)
    today = timezone.now().astimezone(UTC).date()
    add_ip(
        zone,
        pool,
        IP1,
        "out1.postwerk-ips.example",
        warmup_started=today,
        schedule=schedule_create(name="one", volumes=[1]),
    )

    deliver(send(api, 2, domain="gmail.example"), domain="gmail.example")
    deliver(send(api, 2, domain=DEST), domain=DEST)

    assert peers(gmail_sink) == [IP1] and peers(other_sink) == [IP1]
    use = dict(IpDailyUse.objects.filter(address=IP1, day=today).values_list("provider", "count"))
    assert use == {"gmail": 1, OTHER: 1}
    assert Recipient.objects.filter(state=RecipientState.DEFERRED).count() == 2


# --- providers and their replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "provider"),
    [
        (["gmail-smtp-in.l.google.com"], "gmail"),
        (["aspmx.l.google.com", "alt1.aspmx.l.google.com"], "gmail"),
        (["contoso-com.mail.protection.outlook.com"], "microsoft"),
        (["hotmail-com.olc.protection.outlook.com"], "microsoft"),
        (["mta5.am0.yahoodns.net"], "yahoo"),
        (["mx-aol.mail.gm0.yahoodns.net"], "yahoo"),
        (["mx01.mail.icloud.com"], "apple"),
        (["mx00.emig.gmx.net"], "united_internet"),
        (["mx-ha03.web.de"], "united_internet"),
        (["mxs.mail.ru"], "mailru"),
        (["mx.yandex.ru"], "yandex"),
        (["mx3.qq.com"], "qq"),
        (["mx1.dest.example"], OTHER),
        (["notgoogle.com"], OTHER),
    ],
)
def test_providers_are_known_by_their_mx_hosts(hosts, provider):
    assert load().identify(hosts).name == provider


@pytest.mark.parametrize(
    ("provider", "reply", "rule"),
    [
        ("gmail", GMAIL_RATE_LIMITED, "gmail-rate-limited"),
        ("microsoft", MICROSOFT_S3150, "microsoft-ip-blocklisted"),
        (
            "microsoft",
            "451 4.7.650 The mail server [127.0.0.21] has been temporarily rate limited due to IP reputation.",
            "microsoft-ip-rate-limited",
        ),
        ("yahoo", YAHOO_TSS04, "yahoo-tss04"),
        (
            "yahoo",
            "553 5.7.2 [TSS09] All messages from 127.0.0.21 will be permanently deferred; Retrying will NOT succeed.",
            "yahoo-tss09",
        ),
        ("gmail", "550 5.1.1 The email account that you tried to reach does not exist. - gsmtp", None),
        ("gmail", "250 2.0.0 OK - gsmtp", None),
    ],
)
def test_documented_replies_match_their_rules(provider, reply, rule):
    from mail.smtp_client import Reply

    code, rest = reply.split(" ", 1)
    parsed = Reply.parse(int(code), rest)
    found = load().get(provider).rule_for(parsed.code, parsed.enhanced, parsed.text)
    assert (found.name if found else None) == rule


def test_gmail_rate_limit_reply_slows_that_ip_towards_gmail_only(api, zone, mx, organization):
    sink = mx("127.0.0.3")
    sink.data_reply = GMAIL_RATE_LIMITED
    zone.add("gmail.example", "MX", "5 gmail-smtp-in.l.google.com.")
    zone.add("gmail-smtp-in.l.google.com", "A", "127.0.0.3")
    pool = pool_create(name="acme", organization=organization)
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")

    deliver(send(api, 1, domain="gmail.example"), domain="gmail.example")

    state = IpProviderState.objects.get()
    assert (state.address, state.provider, state.action, state.rate) == (IP1, "gmail", "slow", 10)
    assert state.rule == "gmail-rate-limited" and state.reason.startswith("421 4.7.28")
    assert abs((state.until - timezone.now()).total_seconds() - 3600) < 60
    r = Recipient.objects.get()
    assert r.state == RecipientState.DEFERRED and r.last_enhanced == "4.7.28"
    # That IP alone: the destination as a whole is not backed off.
    assert not DestinationState.objects.filter(key="gmail.example", backoff_until__isnull=False).exists()
    event = Event.objects.get(type=EventType.IP_SLOWED)
    assert event.organization_id == organization.pk
    assert event.details["provider"] == "gmail" and event.details["rate"] == 10

    # Slowed: ten a minute from that IP (the refused one counted), the rest waits for the next minute, deferred.
    sink.data_reply = None
    deliver(send(api, 12, domain="gmail.example"), domain="gmail.example")
    assert peers(sink) == [IP1] * 9
    assert Recipient.objects.filter(state=RecipientState.DELIVERED).count() == 9
    assert Recipient.objects.filter(state=RecipientState.DEFERRED).count() == 1 + 3
    assert DestinationState.objects.get(key=f"ip:{IP1}:gmail").window_count == 10


def test_microsoft_block_suspends_the_ip_raises_the_event_and_the_pool_goes_on(api, zone, mx, organization, settings):
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    sink = mx("127.0.0.4")
    sink.data_reply = MICROSOFT_S3150
    zone.add("contoso.example", "MX", "0 contoso-example.mail.protection.outlook.com.")
    zone.add("contoso-example.mail.protection.outlook.com", "A", "127.0.0.4")
    pool = pool_create(name="acme", organization=organization)
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")
    with HttpReceiver() as receiver:
        add_endpoint(api, receiver.url("/hooks"), event_types=["ip.suspended"])
        deliver(send(api, 1, domain="contoso.example"), domain="contoso.example")
        run_webhooks()
        (body,) = bodies(receiver)

    state = IpProviderState.objects.get()
    assert (state.address, state.provider, state.action) == (IP1, "microsoft", "suspend")
    assert abs((state.until - timezone.now()).total_seconds() - 86400) < 60
    # The refusal was about our IP, not the address: deferred, never bounced or suppressed.
    r = Recipient.objects.get()
    assert r.state == RecipientState.DEFERRED
    assert (r.last_code, r.last_enhanced) == (451, "4.7.1")
    assert "S3150" in r.last_text
    assert not Suppression.objects.exists()
    assert body["type"] == "ip.suspended"
    assert body["details"]["address"] == IP1 and body["details"]["provider"] == "microsoft"
    assert body["details"]["rule"] == "microsoft-ip-blocklisted"

    # With the only IP suspended towards Microsoft, Microsoft's mail waits until the suspension ends...
    sink.data_reply = None
    deliver(send(api, 1, domain="contoso.example"), domain="contoso.example")
    waiting = Recipient.objects.filter(state=RecipientState.DEFERRED).order_by("created_at").last()
    assert waiting.next_attempt_at == state.until
    assert len(sink.messages) == 0
    # ...and once the pool has another IP, it goes from that one.
    add_ip(zone, pool, IP2, "out2.postwerk-ips.example")
    deliver(send(api, 1, domain="contoso.example"), domain="contoso.example")
    assert peers(sink) == [IP2]


def test_a_block_of_the_hosts_own_address_suspends_it_too(api, zone, mx, organization):
    sink = mx("127.0.0.4")
    sink.data_reply = MICROSOFT_S3150
    zone.add("contoso.example", "MX", "0 contoso-example.mail.protection.outlook.com.")
    zone.add("contoso-example.mail.protection.outlook.com", "A", "127.0.0.4")
    deliver(send(api, 1, domain="contoso.example"), domain="contoso.example")
    state = IpProviderState.objects.get()
    assert (state.address, state.provider, state.action) == ("", "microsoft", "suspend")
    assert Event.objects.filter(type=EventType.IP_SUSPENDED, organization=organization).count() == 1


def test_operators_replace_the_provider_data_with_their_own_file(api, zone, mx, organization, settings, tmp_path):
    data = tmp_path / "providers.toml"
    data.write_text(
        '[providers.corp]\nlabel = "Corp"\nmx = ["corp-mx.example"]\nmax_messages_per_minute = 1\n'
        '[[providers.corp.rules]]\nname = "corp-go-away"\ncodes = [451]\ntext = "go away"\naction = "suspend"\n'
        "duration = 600\n"
    )
    settings.POSTWERK_PROVIDERS_FILE = str(data)
    sink = mx("127.0.0.5")
    zone.add("corp.example", "MX", "0 in.corp-mx.example.")
    zone.add("in.corp-mx.example", "A", "127.0.0.5")
    pool = pool_create(name="acme", organization=organization)
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")

    deliver(send(api, 2, domain="corp.example"), domain="corp.example")
    assert peers(sink) == [IP1]  # one a minute from that IP

    sink.data_reply = "451 4.3.0 go away"
    Recipient.objects.filter(state=RecipientState.DEFERRED).update(state=RecipientState.QUEUED)
    DestinationState.objects.filter(key=f"ip:{IP1}:corp").update(window_start=None, window_count=0)
    deliver([], domain="corp.example")
    assert IpProviderState.objects.get().rule == "corp-go-away"

    data.write_text('[providers.broken]\nmx = ["x.example"]\n[[providers.broken.rules]]\naction = "explode"\n')
    with pytest.raises(ProviderDataError, match=r"providers\.broken\.rules\[0\].*action"):
        load(data)


# --- who sees what, and operators' tools -------------------------------------------------------------------


def test_organizations_see_their_ips_and_the_shared_ones_only(api, zone, organization):
    globex, _ = organization_get_or_create(name="Globex")
    verified_domain(zone, globex, "globex.example")
    add_ip(zone, pool_create(name="acme", organization=organization), IP1, "out1.postwerk-ips.example")
    add_ip(zone, pool_create(name="globex", organization=globex), IP2, "out2.postwerk-ips.example")
    add_ip(zone, pool_create(name="shared", is_default=True), IP3, "out3.postwerk-ips.example")

    ips = api.get("/api/v1/ips").json()["ips"]
    assert [(ip["address"], ip["pool"]) for ip in ips] == [(IP1, "acme"), (IP3, "shared")]
    assert ips[0]["warmup_day"] is None and ips[0]["allowance"] is None and ips[0]["dns_ok"] is True
    _, secret = api_key_create(organization=globex, name="g")
    from rest_framework.test import APIClient

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert [ip["address"] for ip in other.get("/api/v1/ips").json()["ips"]] == [IP2, IP3]
    # Every pool IP is checked against the DNSBLs.
    assert set(sending_ips()) >= {IP1, IP2, IP3}


def test_management_command_adds_pools_schedules_and_ips_and_lists_them(zone, organization, capsys):
    publish_ptr(zone, IP1, "out1.postwerk-ips.example")
    call_command("ips", "pool-add", "acme", "--organization", str(organization.pk), "--when-exhausted", "overflow")
    call_command("ips", "schedule-add", "fast", "100,1000")
    call_command(
        "ips",
        "add",
        IP1,
        "--ehlo",
        "out1.postwerk-ips.example",
        "--pool",
        "acme",
        "--warmup-start",
        "today",
        "--schedule",
        "fast",
    )
    capsys.readouterr()
    call_command("ips", "list", "--json")
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["address"], row["pool"], row["warmup_day"], row["allowance"], row["dns_ok"]) == (
        IP1,
        "acme",
        1,
        100,
        True,
    )

    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="reverse DNS"):
        call_command("ips", "add", IP2, "--ehlo", "out2.postwerk-ips.example", "--pool", "acme")
    call_command("ips", "providers", "--json")
    names = [p["name"] for p in json.loads(capsys.readouterr().out)]
    assert names[:3] == ["gmail", "microsoft", "yahoo"]


def test_a_per_ip_connection_limit_sends_from_the_pools_next_ip(api, zone, mx, organization, settings, tmp_path):
    from sending.delivery.slots import slot_release, slot_take

    data = tmp_path / "providers.toml"
    data.write_text('[providers.corp]\nlabel = "Corp"\nmx = ["corp-mx.example"]\nmax_connections = 1\n')
    settings.POSTWERK_PROVIDERS_FILE = str(data)
    sink = mx("127.0.0.5")
    zone.add("corp.example", "MX", "0 in.corp-mx.example.")
    zone.add("in.corp-mx.example", "A", "127.0.0.5")
    pool = pool_create(name="acme", organization=organization)
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")
    add_ip(zone, pool, IP2, "out2.postwerk-ips.example")
    elsewhere = slot_take(shaping.rate_key(IP1, "corp"), 1)  # another worker's session from IP1 to Corp
    assert elsewhere is not None

    deliver(send(api, 3, domain="corp.example"), domain="corp.example")

    assert peers(sink) == [IP2, IP2, IP2]
    assert len({m.session_id for m in sink.messages}) == 1
    slot_release(elsewhere)


def test_a_listed_dedicated_ip_is_its_organizations_event_only(zone, organization, settings):
    from sending.reputation.blocklists import blocklists_check

    settings.POSTWERK_DNSBL_ZONES = ["bl.test"]
    settings.POSTWERK_DOMAIN_BLOCKLIST_ZONES = []
    settings.POSTWERK_SENDING_IPS = []
    globex, _ = organization_get_or_create(name="Globex")
    add_ip(zone, pool_create(name="acme", organization=organization), IP1, "out1.postwerk-ips.example")
    zone.add("21.0.0.127.bl.test", "A", "127.0.0.2")

    blocklists_check()

    listed = Event.objects.filter(type=EventType.BLOCKLIST_LISTED)
    assert [(e.organization_id, e.details["target"]) for e in listed] == [(organization.pk, IP1)]
    assert globex.pk != organization.pk


def test_a_delivery_loop_keeps_its_ip_and_its_session(api, zone, mx, organization):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    pool = pool_create(name="acme", organization=organization)
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")
    add_ip(zone, pool, IP2, "out2.postwerk-ips.example")

    deliver(send(api, 4), domain=DEST)

    assert len(set(peers(sink))) == 1  # one of the two, not alternating
    assert len({m.session_id for m in sink.messages}) == 1


# --- each IP's own reputation -------------------------------------------------------------------------------


def refuse(sink, *addresses: str) -> None:
    for address in addresses:
        sink.rcpt_replies[address] = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


def test_an_ip_whose_bounce_rate_reaches_the_pause_threshold_stops_sending_until_an_operator_resumes_it(
    api, zone, mx, organization, settings
):
    from accounts.models import AuditEntry
    from sending.reputation.ip_reputation import ip_reputation_recompute

    settings.POSTWERK_REPUTATION_MIN_DELIVERIES = 4
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    pool = pool_create(name="acme", organization=organization)
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")
    refuse(sink, f"user2@{DEST}", f"user3@{DEST}")  # (user0 stays deliverable: the later sends go to it)
    deliver(send(api, 4), domain=DEST)  # two delivered, two hard bounces, all from IP1
    assert Recipient.objects.filter(sending_ip=IP1, bounce_kind="hard").count() == 2

    (changed,) = ip_reputation_recompute()
    assert (changed.address, changed.reputation_state) == (IP1, "paused")
    assert changed.reputation_reason == "bounce rate 50.00% reached 10.00%"
    event = Event.objects.get(type=EventType.IP_REPUTATION_PAUSED)
    assert event.organization_id == organization.pk
    assert (event.details["address"], event.details["bounce_rate"], event.details["deliveries"]) == (IP1, 0.5, 4)
    assert ip_reputation_recompute() == []  # no second event: paused stays paused

    # Its mail moves to the pool's other IP, loop after loop (pools take turns: IP1 would come up half the time).
    add_ip(zone, pool, IP2, "out2.postwerk-ips.example")
    sink.messages.clear()
    for _ in range(3):
        deliver(send(api, 1, domain=DEST), domain=DEST)
    assert peers(sink) == [IP2, IP2, IP2]

    # With no other IP, it waits (deferred, not attempted), and nothing reaches the MX.
    SendingIp.objects.filter(address=IP2).update(enabled=False)
    egress.pools_forget()
    sink.messages.clear()
    deliver(send(api, 1, domain=DEST), domain=DEST)
    assert sink.messages == []
    waiting = Recipient.objects.get(state=RecipientState.DEFERRED)
    assert waiting.attempts == 0
    assert Event.objects.filter(recipient=waiting, type=EventType.DEFERRED).get().details["reason"] == "waiting_for_ip"

    ips = {ip["address"]: ip for ip in api.get("/api/v1/ips").json()["ips"]}
    assert ips[IP1]["reputation"]["state"] == "paused"
    assert ips[IP1]["reputation"]["why"] == "bounce rate 50.00% reached 10.00%"

    call_command("ips", "resume", IP1, "--reason", "list cleaned")
    resumed = Event.objects.get(type=EventType.IP_REPUTATION_RESUMED)
    assert (resumed.organization_id, resumed.details["reason"], resumed.details["previous_state"]) == (
        organization.pk,
        "list cleaned",
        "paused",
    )
    entry = AuditEntry.objects.get(action="sending_ip.resumed")
    assert (entry.organization_id, entry.target) == (organization.pk, IP1)
    # Counted from the resume on: the old bounces cannot pause it again at once.
    assert ip_reputation_recompute() == []
    Recipient.objects.filter(state=RecipientState.DEFERRED).update(state=RecipientState.QUEUED)
    deliver([], domain=DEST)
    assert peers(sink) == [IP1]


def test_an_ip_whose_bounce_rate_reaches_the_warning_threshold_warns_and_keeps_sending(
    api, zone, mx, organization, settings
):
    from sending.reputation.ip_reputation import ip_reputation_recompute

    settings.POSTWERK_REPUTATION_MIN_DELIVERIES = 4
    sink = mx("127.0.0.2")
    add_mx_domain(zone, DEST, "127.0.0.2")
    pool = pool_create(name="acme", is_default=True)  # a shared pool: every organization hears of it
    add_ip(zone, pool, IP1, "out1.postwerk-ips.example")
    globex, _ = organization_get_or_create(name="Globex")
    refuse(sink, f"user11@{DEST}")
    deliver(send(api, 12), domain=DEST)  # one hard bounce in twelve: 8.3%, over 5%, under 10%

    # Beat's recompute judges the IPs with the organizations' scopes (the organization warns too, and sends on).
    assert tasks.reputation_recompute()["ips_changed"] == 1
    assert SendingIp.objects.get(address=IP1).reputation_state == "warning"
    assert ip_reputation_recompute() == []
    warned = Event.objects.filter(type=EventType.IP_REPUTATION_WARNING)
    assert sorted(e.organization_id for e in warned) == sorted([organization.pk, globex.pk])
    sink.messages.clear()
    deliver(send(api, 1, domain=DEST), domain=DEST)
    assert peers(sink) == [IP1]
