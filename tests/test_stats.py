"""Sending statistics: counters written with the events (sending.states → sending.stats.counting) and
GET /api/v1/stats (sending.stats.reading), by hour or day, grouped, as JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from accounts.scopes import Scope
from accounts.services import api_key_create, organization_get_or_create
from sending.feedback.tracking import click_url, open_url, tracking_base
from sending.models import Event, EventType, Recipient, StatsCounter
from sending.states import complaint_recorded
from sending.stats.counting import delivery_time_metric, metrics_of
from sending.stats.reading import percentiles_of
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"
PROXY = "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"


def send(api, to, **extra):
    body = {"from": "hello@acme.example", "to": to, "subject": "Hi", "text": "Hello", **extra}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def stats(api, **params):
    response = api.get("/api/v1/stats", params)
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def history(api, zone, mx, domain):
    """Two deliveries to Gmail (MX *.google.com) tagged `order`, one hard bounce elsewhere tagged `welcome`."""
    publish_dkim(zone, domain)
    zone.add("gmail.example", "MX", "5 gmail-smtp-in.l.google.com.")
    zone.add("gmail-smtp-in.l.google.com", "A", "127.0.0.3")
    mx("127.0.0.3")
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"gone@dest.example": "550 5.1.1 No such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    first = send(api, ["a@gmail.example", "b@gmail.example"], tags=["order"])
    second = send(api, ["gone@dest.example"], tags=["welcome"])
    deliver_queued()
    return first, second


def test_counts_are_written_with_the_events_and_the_api_reads_them(api, history, domain):
    body = stats(api)
    totals = body["totals"]
    assert (totals["accepted"], totals["sent"], totals["delivered"], totals["bounced"]) == (3, 3, 2, 1)
    assert (totals["bounced_hard"], totals["bounced_soft"], totals["deferred"], totals["complained"]) == (1, 0, 0, 0)
    # Reputation's formulas: hard bounces / (delivered + bounced); delivered / (delivered + bounced + failed).
    assert totals["bounce_rate"] == round(1 / 3, 6) and totals["delivery_rate"] == round(2 / 3, 6)
    assert totals["complaint_rate"] == 0.0 and totals["open_rate"] == 0.0
    assert totals["delivery_time"]["p50"] is not None  # loopback delivery: within the first buckets
    assert body["interval"] == "day" and body["group_by"] is None and "groups" not in body
    assert len(body["series"]) == 8  # 7 days back from now, the first rounded down to its midnight
    today = body["series"][-1]
    assert today["time"] == timezone.now().astimezone(UTC).strftime("%Y-%m-%dT00:00:00Z")
    assert today["delivered"] == 2 and sum(p["delivered"] for p in body["series"]) == 2

    # Each count is the number of its events: the counters were written with them.
    types = Counter(Event.objects.filter(organization=domain.organization).values_list("type", flat=True))
    assert (totals["delivered"], totals["bounced"], totals["sent"]) == (
        types[EventType.DELIVERED],
        types[EventType.BOUNCED],
        types[EventType.SENT],
    )

    providers = {g["key"]: g for g in stats(api, group_by="provider")["groups"]}
    # Acceptance comes before any MX lookup: counted under "" (not attempted yet); outcomes under their provider.
    assert set(providers) == {"", "gmail", "other"}
    assert (providers[""]["label"], providers[""]["totals"]["accepted"], providers[""]["totals"]["delivered"]) == (
        "(not attempted yet)",
        3,
        0,
    )
    assert providers["gmail"]["label"] == "Gmail / Google Workspace"
    assert (providers["gmail"]["totals"]["delivered"], providers["other"]["totals"]["bounced"]) == (2, 1)
    assert providers["other"]["totals"]["bounce_rate"] == 1.0

    tags = {g["key"]: g["totals"] for g in stats(api, group_by="tag")["groups"]}
    assert (tags["order"]["delivered"], tags["welcome"]["bounced"], tags["welcome"]["delivered"]) == (2, 1, 0)
    (by_domain,) = stats(api, group_by="domain")["groups"]
    assert (by_domain["key"], by_domain["label"], by_domain["totals"]["accepted"]) == (str(domain.pk), domain.name, 3)
    (by_stream,) = stats(api, group_by="stream")["groups"]
    assert by_stream["totals"]["delivered"] == 2

    hourly = stats(api, interval="hour")
    assert len(hourly["series"]) == 25 and hourly["totals"]["delivered"] == 2  # a day back, both ends partial
    assert hourly["series"][-1]["time"] == timezone.now().astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def test_opens_clicks_and_complaints_count_unique_and_total_with_machine_opens_apart(api, zone, mx, domain, settings):
    settings.POSTWERK_TRACKING_HOST = "track.postwerk.example"
    publish_dkim(zone, domain)
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    mx("127.0.0.2")
    send(api, ["jane@dest.example"], html="<p><a href='https://acme.example/x'>x</a></p>")
    deliver_queued()
    recipient = Recipient.objects.get()
    base = tracking_base(domain)
    pixel, link = (
        urlsplit(open_url(base, recipient.pk)).path,
        urlsplit(click_url(base, recipient.pk, "https://a.example/")).path,
    )
    client = Client()
    for agent, times in ((PROXY, 2), (BROWSER, 3)):
        for _ in range(times):
            assert client.get(pixel, HTTP_USER_AGENT=agent, REMOTE_ADDR="198.51.100.7").status_code == 200
    for _ in range(2):
        assert client.get(link, HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7").status_code == 302
    for _ in range(2):  # a second report about the same delivery is not a second complaint
        complaint_recorded(recipient, {"source": "arf"})

    totals = stats(api)["totals"]
    assert (totals["opened"], totals["opened_unique"]) == (3, 1)
    assert (totals["machine_opened"], totals["machine_opened_unique"]) == (2, 1)
    assert (totals["clicked"], totals["clicked_unique"]) == (2, 1)
    assert totals["complained"] == 1
    assert (totals["open_rate"], totals["click_rate"], totals["complaint_rate"]) == (1.0, 1.0, 1.0)
    assert Event.objects.filter(type=EventType.OPENED).count() == 2  # the first of each kind only


def test_csv_has_the_same_numbers_as_json(api, history):
    response = api.get("/api/v1/stats", {"group_by": "provider"}, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    body = stats(api, group_by="provider")
    expected = [(g["key"], p["time"], p["delivered"], p["bounced"]) for g in body["groups"] for p in g["series"]]
    assert [(r["group"], r["time"], int(r["delivered"]), int(r["bounced"])) for r in rows] == expected
    gmail_today = next(r for r in rows if r["group"] == "gmail" and r["delivered"] == "2")
    assert gmail_today["bounce_rate"] == "0.0" and gmail_today["label"] == "Gmail / Google Workspace"

    # Only the Accept header chooses: a `format` query parameter is no 404.
    assert api.get("/api/v1/stats", {"format": "AAA"}).json()["totals"]["delivered"] == 2
    bad = api.get("/api/v1/stats", {"interval": "week"}, HTTP_ACCEPT="text/csv")
    assert bad.status_code == 400 and bad["Content-Type"] == "application/json"
    assert bad.json()["fields"] == {"interval": ["One of hour, day."]}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"interval": "week"}, "interval"),
        ({"group_by": "recipient"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-45"}, "to"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "from"),
        ({"from": "2026-01-01", "to": "2026-03-01", "interval": "hour"}, "from"),
        ({"to": "0001-01-01T00:00:00"}, "to"),
        ({"from": "9999-06-01"}, "from"),
        ({"to": "2026-01-01T00:00:00+25:00"}, "to"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(api, params, field):
    response = api.get("/api/v1/stats", params)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and list(response.json()["fields"]) == [field]


def test_dates_and_times_choose_the_buckets(api, history):
    today = timezone.now().astimezone(UTC).date()
    body = stats(api, **{"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()})
    assert [p["time"] for p in body["series"]] == [f"{today.isoformat()}T00:00:00Z"]
    assert body["from"] == f"{today.isoformat()}T00:00:00Z" and body["totals"]["delivered"] == 2
    past = stats(api, **{"from": "2020-01-01T00:00:00", "to": "2020-01-02T00:00:00+00:00", "interval": "hour"})
    assert len(past["series"]) == 24 and past["totals"]["delivered"] == 0


def test_needs_the_stats_scope_and_sees_only_its_own_organization(api, history, organization):
    _, narrow = api_key_create(organization=organization, name="narrow", scopes=[Scope.MESSAGES_READ])
    client = Client()
    refused = client.get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {narrow}")
    assert refused.status_code == 403 and refused.json()["required_scope"] == "stats:read"
    _, reporting = api_key_create(organization=organization, name="bi", scopes=[Scope.STATS_READ])
    assert client.get("/api/v1/stats", HTTP_AUTHORIZATION=f"Bearer {reporting}").json()["totals"]["delivered"] == 2

    other, _ = organization_get_or_create(name="Other")
    _, foreign = api_key_create(organization=other, name="other")
    body = client.get("/api/v1/stats", {"group_by": "domain"}, HTTP_AUTHORIZATION=f"Bearer {foreign}").json()
    assert body["totals"]["accepted"] == 0 and body["groups"] == []
    assert StatsCounter.objects.exclude(organization=organization).count() == 0


def test_sandbox_mail_counts_nowhere(api, zone, mx, domain, organization):
    _, secret = api_key_create(organization=organization, name="sandbox", sandbox=True)
    client = Client()
    body = {"from": "hello@acme.example", "to": ["x@dest.example"], "subject": "Hi", "text": "Hi"}
    response = client.post(
        "/api/v1/messages", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 202, response.json()
    deliver_queued()
    assert StatsCounter.objects.count() == 0


def test_metrics_of_each_event():
    from sending.stats.counting import Facts

    facts = Facts(1, 2, 0, ("a",), "gmail", started_at=datetime(2026, 1, 1, tzinfo=UTC))
    at = datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC)
    assert metrics_of("queued", {}, sequence=1, at=at, facts=facts) == ["accepted"]
    assert metrics_of("queued", {"scheduled": True}, sequence=2, at=at, facts=facts) == []
    assert metrics_of("suppressed", {}, sequence=1, at=at, facts=facts) == ["accepted", "suppressed"]
    assert metrics_of("sent", {"attempt": 2}, sequence=4, at=at, facts=facts) == []
    assert metrics_of("delivered", {}, sequence=3, at=at, facts=facts) == ["delivered", "dt_5"]
    assert metrics_of("bounced", {"kind": "soft"}, sequence=3, at=at, facts=facts) == ["bounced", "bounced_soft"]
    assert metrics_of("complained", {}, sequence=4, at=at, facts=facts) == []
    assert metrics_of("opened", {"machine": True}, sequence=4, at=at, facts=facts, unique=True) == [
        "machine_opened",
        "machine_opened_unique",
    ]
    assert [delivery_time_metric(s) for s in (0, 1, 1.5, 86400, 86401)] == [
        "dt_1",
        "dt_1",
        "dt_2",
        "dt_86400",
        "dt_inf",
    ]
    assert percentiles_of({"dt_1": 50, "dt_5": 40, "dt_60": 9, "dt_inf": 1}) == {"p50": 1, "p90": 5, "p99": 60}
    assert percentiles_of({"dt_inf": 3}) == {"p50": None, "p90": None, "p99": None}
    assert percentiles_of({}) == {"p50": None, "p90": None, "p99": None}


def test_counting_adds_one_statement_per_transaction_and_no_commit(api, zone, mx, domain):
    """The counters ride in the transactions that write the events: one INSERT … ON CONFLICT per accepted batch
    and per recorded delivery outcome, never a commit of their own."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    publish_dkim(zone, domain)
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    mx("127.0.0.2")
    recipients = [f"r{i}@dest.example" for i in range(5)]

    def statements(queries: list[dict]) -> tuple[int, int, int]:
        sql = [q["sql"] for q in queries]
        counters = sum("sending_statscounter" in s for s in sql)
        commits = sum(s.strip().upper().startswith(("COMMIT", "RELEASE SAVEPOINT")) for s in sql)
        return len(sql), counters, commits

    with CaptureQueriesContext(connection) as accept:
        send(api, recipients, tags=["a", "b"])
    with CaptureQueriesContext(connection) as delivery:
        deliver_queued()
    total, counters, _ = statements(accept.captured_queries)
    assert counters == 1, [q["sql"][:80] for q in accept.captured_queries]
    d_total, d_counters, _ = statements(delivery.captured_queries)
    # Each recipient has its own VERP envelope, so its own SMTP transaction and outcome write: one statement each.
    assert d_counters == len(recipients)
    print(f"\naccept 1 message x 5 recipients: {total} statements ({counters} counting)")
    print(f"deliver it: {d_total} statements ({d_counters} counting)")
    # The message's hour and day rows, for all mail, its domain, stream, provider and each of its two tags.
    assert StatsCounter.objects.filter(metric="accepted").count() == 2 * 6
    assert StatsCounter.objects.get(metric="delivered", span="d", dimension="").count == 5
    assert StatsCounter.objects.get(metric="delivered", span="h", dimension="tag", key="b").count == 5
