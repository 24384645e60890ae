"""/metrics: protected (bearer token or staff session, never open), and its figures move with the mail."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from sending.observability import metrics
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token"


@pytest.fixture(autouse=True)
def fresh_figures(settings):
    settings.POSTWERK_METRICS_TOKEN = TOKEN
    metrics.clear_cache()
    yield
    metrics.clear_cache()


def scrape(client: Client | None = None) -> dict[tuple[str, tuple], float]:
    metrics.clear_cache()
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(figures: dict, name: str, **labels: str) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def send(api, to: str = "jane@dest.example") -> None:
    response = api.post(
        "/api/v1/messages", {"from": "hello@acme.example", "to": [to], "subject": "Hi", "text": "Hi"}, format="json"
    )
    assert response.status_code == 202, response.json()


def test_without_a_token_configured_it_is_not_found(settings, client):
    settings.POSTWERK_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_needs_the_bearer_token(client):
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_staff_session_may_read_it_without_a_token(settings, client):
    settings.POSTWERK_METRICS_TOKEN = ""
    user_model = get_user_model()
    client.force_login(user_model.objects.create_user("ops", password="x", is_staff=True))
    assert client.get("/metrics").status_code == 200
    client.force_login(user_model.objects.create_user("member", password="x"))
    assert client.get("/metrics").status_code == 404


def test_figures_move_when_mail_is_accepted_and_delivered(api, zone, mx, domain):
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    publish_dkim(zone, domain)
    before = scrape()
    assert value(before, "postwerk_database_up") == 1
    assert value(before, "postwerk_queue_depth", state="queued") == 0

    send(api)
    send(api, "bob@dest.example")
    queued = scrape()
    assert value(queued, "postwerk_queue_depth", state="queued") == 2
    assert value(queued, "postwerk_queue_oldest_age_seconds", state="queued") >= 0
    assert value(queued, "postwerk_recipients_accepted_last_minute") == 2
    assert value(queued, "postwerk_deliveries_last_minute", outcome="delivered") == 0

    assert deliver_queued() == 2
    done = scrape()
    assert value(done, "postwerk_queue_depth", state="queued") == 0
    assert value(done, "postwerk_deliveries_last_minute", outcome="delivered") == 2
    # Per-process figures: this process recorded two attempts and two latencies (files of earlier runs may add).
    latency = "postwerk_delivery_latency_seconds_count"
    assert value(done, latency) - value(before, latency) == 2
    attempts = "postwerk_delivery_attempts_total"
    assert value(done, attempts, outcome="delivered") - value(before, attempts, outcome="delivered") == 2
    for state in ("pending", "queued", "sending"):
        assert value(done, "postwerk_webhook_backlog", state=state) == 0


def test_deferred_and_bounced_are_counted(api, zone, mx, domain):
    sink = mx("127.0.0.2")
    sink.rcpt_replies = {"later@slow.example": "451 4.2.0 Try later", "gone@dest.example": "550 5.1.1 No such user"}
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    add_mx_domain(zone, "slow.example", "127.0.0.2")
    publish_dkim(zone, domain)
    send(api, "later@slow.example")
    send(api, "gone@dest.example")
    deliver_queued()
    figures = scrape()
    assert value(figures, "postwerk_deliveries_last_minute", outcome="deferred") == 1
    assert value(figures, "postwerk_deliveries_last_minute", outcome="bounced") == 1
    assert value(figures, "postwerk_queue_depth", state="deferred") == 1
