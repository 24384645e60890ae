"""Webhooks against a real HTTP receiver on loopback: signed bodies, retries on schedule, 410, replay, the SSRF
guard, and the README's verification snippet."""

from __future__ import annotations

import json
import re
import ssl
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.services import organization_get_or_create
from config.celery import app as celery_app
from sending.models import Event, EventType, WebhookAttempt, WebhookCursor, WebhookDelivery, WebhookEndpoint
from sending.webhooks import dispatch, transport
from sending.webhooks.endpoints import webhook_endpoint_create
from sending.webhooks.fanout import GAP_WAIT, _advance, webhook_fanout
from sending.webhooks.signing import signature_header, signature_verify
from sending.webhooks.transport import address_public
from tests.conftest import add_mx_domain, deliver_queued
from tests.servers.certs import make_self_signed
from tests.servers.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db

State = WebhookDelivery.State
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    # The operator's allowances for a receiver on loopback over plain http.
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    settings.POSTWERK_WEBHOOK_TIMEOUT = 2.0
    return settings


@pytest.fixture
def receiver():
    with HttpReceiver() as server:
        yield server


def readme_verifier():
    """The verification function exactly as the README documents it."""
    section = README.read_text().split("## Events and webhooks", 1)[1].split("## How it works", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own README
    return namespace["verify_postwerk_signature"]


def add_endpoint(api, url, **fields):
    response = api.post("/api/v1/webhooks", {"url": url, **fields}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["secret"].startswith("whsec_")
    return body["id"], body["secret"]


def send(api, to="jane@dest.example", **extra):
    body = {"from": "hello@acme.example", "to": [to], "subject": "Hi", "text": "Hello", **extra}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def run_webhooks() -> int:
    """What the webhooks sweep and its tasks do, in this process: fan out, then send every due delivery."""
    webhook_fanout()
    due = dispatch.deliveries_due()
    ids = json.loads(json.dumps([delivery_id for delivery_id, _ in due]))  # tasks carry ids only, as JSON
    return dispatch.deliveries_send(ids) if ids else 0


def time_passes():
    """Make every scheduled retry due now."""
    WebhookDelivery.objects.filter(state=State.PENDING).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def bodies(receiver):
    return [json.loads(r.body) for r in receiver.requests]


def test_events_reach_a_real_receiver_signed_with_ids_sequence_tags_and_metadata(api, zone, mx, receiver):
    mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    _, secret = add_endpoint(api, receiver.url())
    sent = send(api, tags=["order"], metadata={"order_id": "1234"})
    assert deliver_queued() == 1

    assert run_webhooks() == 3
    verify = readme_verifier()
    received = bodies(receiver)
    assert [b["type"] for b in sorted(received, key=lambda b: b["sequence"])] == ["queued", "sent", "delivered"]
    assert sorted(b["sequence"] for b in received) == [1, 2, 3]
    for request, body in zip(receiver.requests, received, strict=True):
        assert verify(request.headers["postwerk-signature"], request.body, secret)
        assert request.headers["postwerk-event-id"] == body["id"]
        assert request.headers["content-type"] == "application/json"
        assert body["message_id"] == sent["id"] and body["recipient_id"] == sent["recipients"][0]["id"]
        assert body["recipient"] == "jane@dest.example"
        assert (body["tags"], body["metadata"]) == (["order"], {"order_id": "1234"})
        assert body["timestamp"].endswith("Z")
    delivered = next(b for b in received if b["type"] == "delivered")
    assert delivered["details"]["smtp"]["code"] == 250
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {State.SUCCEEDED}
    attempt = WebhookAttempt.objects.first()
    assert attempt.status_code == 200 and attempt.response_excerpt == "status 200" and attempt.ip == "127.0.0.1"

    # Nothing is sent twice, and nothing more is due.
    assert run_webhooks() == 0
    assert len(receiver.requests) == 3


def test_only_wanted_types_of_the_own_organization_and_nothing_from_before_the_endpoint(api, receiver, organization):
    send(api, to="early@dest.example")  # before the endpoint exists: not its business
    add_endpoint(api, receiver.url(), event_types=["queued"])
    other, _ = organization_get_or_create(name="Other")
    Event.objects.create(organization=other, type=EventType.QUEUED, details={})
    Event.objects.create(organization=organization, type=EventType.DOMAIN_VERIFIED, details={})
    send(api, to="late@dest.example")

    run_webhooks()
    assert [(b["type"], b["recipient"]) for b in bodies(receiver)] == [("queued", "late@dest.example")]


def test_receiver_failures_are_retried_on_the_schedule_then_succeed(api, receiver, settings):
    receiver.answers = [500, (503, b"busy")]
    add_endpoint(api, receiver.url(), event_types=["queued"])
    send(api)

    before = timezone.now()
    assert run_webhooks() == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.PENDING, 1, 500)
    assert timedelta(seconds=59) <= delivery.next_attempt_at - before <= timedelta(seconds=62)
    assert run_webhooks() == 0  # not due yet
    assert WebhookEndpoint.objects.get().failing_since is not None

    time_passes()
    assert run_webhooks() == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status) == (2, 503)
    assert timedelta(seconds=299) <= delivery.next_attempt_at - timezone.now() <= timedelta(seconds=301)

    time_passes()
    assert run_webhooks() == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.SUCCEEDED, 3)
    attempts = list(delivery.attempt_log.order_by("id"))
    assert [(a.status_code, a.response_excerpt) for a in attempts] == [
        (500, "status 500"),
        (503, "busy"),
        (200, "status 200"),
    ]
    assert all(a.duration_ms >= 0 and a.trigger == "auto" for a in attempts)
    # The same event each time: one id, each with a fresh signature.
    assert len({r.headers["postwerk-event-id"] for r in receiver.requests}) == 1
    assert [r.headers["postwerk-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.failing_since is None and endpoint.last_success_at is not None


def test_timeouts_and_refused_connections_are_retried_and_the_last_step_fails(api, receiver, settings):
    settings.POSTWERK_WEBHOOK_TIMEOUT = 0.5
    settings.POSTWERK_WEBHOOK_RETRY_SCHEDULE = [60]
    receiver.delay = 2.0
    add_endpoint(api, receiver.url(), event_types=["queued"])
    send(api)

    started = time.monotonic()
    run_webhooks()
    assert time.monotonic() - started < 1.9  # the deadline, not the receiver, decides
    delivery = WebhookDelivery.objects.get()
    attempt = delivery.attempt_log.get()
    assert (attempt.status_code, attempt.error) == (None, "timed out")
    assert delivery.state == State.PENDING

    receiver.stop()  # nobody listens now: connection refused
    time_passes()
    run_webhooks()
    delivery.refresh_from_db()
    last = delivery.attempt_log.order_by("-id").first()
    assert last.status_code is None and "connection" in last.error
    assert (delivery.state, delivery.attempts) == (State.FAILED, 2)  # the schedule had one step


def test_a_batch_stops_at_an_unreachable_endpoint_instead_of_waiting_out_every_timeout(api, receiver):
    add_endpoint(api, receiver.url(), event_types=["queued"])
    for n in range(3):
        send(api, to=f"r{n}@dest.example")
    receiver.stop()
    assert run_webhooks() == 1
    states = sorted(WebhookDelivery.objects.values_list("state", "attempts"))
    assert states == [(State.PENDING, 0), (State.PENDING, 0), (State.PENDING, 1)]
    assert len(set(WebhookDelivery.objects.values_list("next_attempt_at", flat=True))) == 1


def test_410_gone_disables_the_endpoint_and_tells_the_organization(api, receiver):
    receiver.answers = [410]
    endpoint_id, _ = add_endpoint(api, receiver.url(), event_types=["queued"])
    with HttpReceiver() as watcher:
        add_endpoint(api, watcher.url(), event_types=["webhook.disabled"])
        send(api)
        send(api, to="second@dest.example")
        run_webhooks()
        endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
        assert not endpoint.enabled and "410" in endpoint.disabled_reason
        assert sorted(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("state", flat=True)) == [
            State.CANCELLED,
            State.FAILED,
        ]
        event = Event.objects.get(type=EventType.WEBHOOK_DISABLED)
        assert event.details["endpoint_id"] == endpoint_id
        # The organization's other endpoint hears about it.
        run_webhooks()
        assert [b["type"] for b in bodies(watcher)] == ["webhook.disabled"]
    assert len(receiver.requests) == 1
    send(api, to="third@dest.example")
    run_webhooks()
    assert len(receiver.requests) == 1  # a disabled endpoint gets nothing new

    response = api.patch(f"/api/v1/webhooks/{endpoint_id}", {"enabled": True}, format="json")
    assert response.status_code == 200 and response.json()["disabled_reason"] == ""


def test_an_endpoint_failing_for_three_days_is_disabled(api, receiver, settings):
    receiver.status = 500
    endpoint_id, _ = add_endpoint(api, receiver.url(), event_types=["queued"])
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        failing_since=timezone.now() - timedelta(seconds=settings.POSTWERK_WEBHOOK_DISABLE_AFTER + 1)
    )
    send(api)
    run_webhooks()
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    assert not endpoint.enabled and endpoint.disabled_reason.startswith("failing since")
    assert Event.objects.filter(type=EventType.WEBHOOK_DISABLED).count() == 1


def test_a_delivery_is_replayed_by_hand_from_the_api(api, receiver):
    endpoint_id, secret = add_endpoint(api, receiver.url(), event_types=["queued"])
    send(api)
    run_webhooks()
    delivery = WebhookDelivery.objects.get()

    listing = api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries").json()
    assert [d["id"] for d in listing["results"]] == [str(delivery.pk)]
    assert listing["results"][0]["event_type"] == "queued"

    response = api.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{delivery.pk}/replay")
    assert response.status_code == 202, response.json()
    assert response.json()["state"] == State.QUEUED
    # The task the replay published (after commit), run here.
    assert dispatch.deliveries_send([str(delivery.pk)]) == 1

    first, second = receiver.requests
    assert first.headers["postwerk-event-id"] == second.headers["postwerk-event-id"]
    assert first.body == second.body
    assert readme_verifier()(second.headers["postwerk-signature"], second.body, secret)
    detail = api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries/{delivery.pk}").json()
    assert [(a["trigger"], a["status_code"]) for a in detail["attempt_log"]] == [("auto", 200), ("replay", 200)]
    assert detail["state"] == State.SUCCEEDED
    assert detail["next_attempt_at"] is None  # nothing more is coming to a succeeded delivery

    WebhookEndpoint.objects.filter(pk=endpoint_id).update(enabled=False)
    refused = api.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{delivery.pk}/replay")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"


def test_forged_stale_or_altered_requests_fail_the_documented_verification(api, receiver):
    verify = readme_verifier()
    _, secret = add_endpoint(api, receiver.url(), event_types=["queued"])
    send(api)
    run_webhooks()
    (request,) = receiver.requests
    header, body = request.headers["postwerk-signature"], request.body
    assert verify(header, body, secret)
    assert signature_verify(header, body, secret)

    assert not verify(header, body.replace(b"jane", b"mallory"), secret)  # altered body
    assert not verify(header, body, "whsec_someone-elses")  # wrong secret
    forged = signature_header(body, ["whsec_attacker"])
    assert not verify(forged, body, secret)
    stale = signature_header(body, [secret], timestamp=int(time.time()) - 600)  # a captured request, replayed
    assert not verify(stale, body, secret)
    moved = re.sub(r"t=\d+", f"t={int(time.time()) + 1}", header)  # a fresh time on an old signature
    assert not verify(moved, body, secret)
    assert not verify("v1=" + header.split("v1=")[1], body, secret)  # no timestamp


def test_ssrf_guard_refuses_loopback_private_and_plain_http_unless_allowed(api, zone, receiver, settings):
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = False
    for url in (
        receiver.url(),
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
    ):
        response = api.post("/api/v1/webhooks", {"url": url}, format="json")
        assert response.status_code == 400, url
        assert "non-public" in response.json()["fields"]["url"][0]
    # A name is resolved and every address it has is checked.
    zone.add("hooks.rebind.example", "A", "93.184.216.34")
    zone.add("hooks.rebind.example", "A", "127.0.0.1")
    response = api.post("/api/v1/webhooks", {"url": "https://hooks.rebind.example/"}, format="json")
    assert response.status_code == 400 and "127.0.0.1" in response.json()["message"]
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = False
    response = api.post("/api/v1/webhooks", {"url": "http://hooks.example.com/"}, format="json")
    assert response.status_code == 400 and "https" in response.json()["message"]
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True

    # An endpoint added while allowed is refused at send time once the allowance is off: checked every send.
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    add_endpoint(api, receiver.url(), event_types=["queued"])
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = False
    send(api)
    run_webhooks()
    assert receiver.requests == []
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and attempt.error.startswith("refused:") and "127.0.0.1" in attempt.error

    assert address_public("93.184.216.34") and address_public("2606:4700::1111")
    for address in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254"):
        assert not address_public(address), address
    for address in ("::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "2002:7f00:1::1", "224.0.0.1", "0.0.0.0"):
        assert not address_public(address), address


def test_test_action_posts_a_sample_event_now(api, receiver):
    endpoint_id, secret = add_endpoint(api, receiver.url(), event_types=["queued"])
    response = api.post(f"/api/v1/webhooks/{endpoint_id}/test", {"type": "bounced"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["ok"] and body["status_code"] == 200 and body["trigger"] == "test"
    (request,) = receiver.requests
    sample = json.loads(request.body)
    assert sample["type"] == "bounced" and sample["test"] is True
    assert readme_verifier()(request.headers["postwerk-signature"], request.body, secret)

    receiver.status = 500
    failed = api.post(f"/api/v1/webhooks/{endpoint_id}/test", {}, format="json").json()
    assert not failed["ok"] and failed["status_code"] == 500
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.failing_since is None and endpoint.enabled  # a test changes nothing about the endpoint


def test_rotated_secret_overlaps_then_only_the_new_one_signs(api, receiver):
    endpoint_id, old = add_endpoint(api, receiver.url(), event_types=["queued"])
    response = api.post(f"/api/v1/webhooks/{endpoint_id}/rotate-secret", {"overlap": 3600}, format="json")
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new != old and response.json()["previous_secret_expires_at"]
    assert "secret" not in api.get(f"/api/v1/webhooks/{endpoint_id}").json()
    verify = readme_verifier()

    send(api)
    run_webhooks()
    request = receiver.requests[-1]
    assert request.headers["postwerk-signature"].count("v1=") == 2
    assert verify(request.headers["postwerk-signature"], request.body, old)
    assert verify(request.headers["postwerk-signature"], request.body, new)

    WebhookEndpoint.objects.filter(pk=endpoint_id).update(previous_secret_expires_at=timezone.now())
    send(api, to="later@dest.example")
    run_webhooks()
    request = receiver.requests[-1]
    assert not verify(request.headers["postwerk-signature"], request.body, old)
    assert verify(request.headers["postwerk-signature"], request.body, new)


def test_webhook_api_validates_and_is_scoped_to_the_organization(api, receiver, organization):
    bad = api.post("/api/v1/webhooks", {"url": receiver.url(), "event_types": ["nope"]}, format="json")
    assert bad.status_code == 400 and "event_types" in bad.json()["fields"]
    other, _ = organization_get_or_create(name="Other")
    foreign, _ = webhook_endpoint_create(organization=other, url=receiver.url(), event_types=[])
    assert api.get(f"/api/v1/webhooks/{foreign.pk}").status_code == 404
    assert api.get("/api/v1/webhooks").json() == []
    endpoint_id, _ = add_endpoint(api, receiver.url(), description="orders")
    changed = api.patch(f"/api/v1/webhooks/{endpoint_id}", {"event_types": ["delivered", "bounced"]}, format="json")
    assert changed.json()["event_types"] == ["delivered", "bounced"]
    assert api.delete(f"/api/v1/webhooks/{endpoint_id}").status_code == 204
    assert not WebhookEndpoint.objects.filter(pk=endpoint_id).exists()


def test_lost_tasks_and_dead_workers_are_picked_up_again_by_the_sweep(api, receiver, settings):
    add_endpoint(api, receiver.url(), event_types=["queued"])
    send(api)
    webhook_fanout()
    assert len(dispatch.deliveries_due()) == 1  # queued, leased: its task is on the way
    assert dispatch.deliveries_due() == []
    # The broker lost it: once the lease runs out the sweep queues it again.
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert len(dispatch.deliveries_due()) == 1
    # A worker claimed it and died.
    WebhookDelivery.objects.update(state=State.SENDING, sending_since=timezone.now() - timedelta(hours=1))
    due = dispatch.deliveries_due()
    assert len(due) == 1
    assert dispatch.deliveries_send([due[0][0]]) == 1
    assert dispatch.deliveries_send([due[0][0]]) == 0  # a duplicate task finds nothing to claim
    assert len(receiver.requests) == 1


def test_webhook_tasks_run_on_their_own_queue():
    for name in ("sending.webhooks.deliver", "sending.webhooks.sweep"):
        route = celery_app.amqp.router.route({}, name)
        assert route["queue"].name == "webhooks"
    assert celery_app.amqp.router.route({}, "sending.tasks.deliver")["queue"].name == "delivery"


def test_fanout_cursor_waits_for_a_hole_before_moving_past_it():
    now = timezone.now()
    cursor = WebhookCursor(position=10)
    # 12 is visible before 11 (a transaction still open): stop at 10 and remember the hole.
    assert _advance(cursor, [12, 13], now) == (10, 11, now)
    cursor.gap_at, cursor.gap_since = 11, now
    assert _advance(cursor, [12, 13], now + timedelta(seconds=5)) == (10, 11, now)
    # 11 committed: no hole any more.
    assert _advance(cursor, [11, 12, 13], now + timedelta(seconds=6)) == (13, None, None)
    # 11 never comes (rolled back): after GAP_WAIT the cursor moves on.
    assert _advance(cursor, [12, 13], now + GAP_WAIT) == (13, None, None)


def test_https_certificates_are_verified_for_the_name_while_the_checked_address_is_used(
    api, zone, tmp_path, monkeypatch
):
    cert, key = make_self_signed(tmp_path, "hooks.acme-app.example")
    zone.add("hooks.acme-app.example", "A", "127.0.0.1")
    with HttpReceiver(tls=(cert, key)) as secure:
        add_endpoint(api, secure.url(host="hooks.acme-app.example"), event_types=["queued"])
        send(api)
        run_webhooks()  # a self-signed certificate is not trusted
        attempt = WebhookAttempt.objects.get()
        assert attempt.status_code is None and "CERTIFICATE_VERIFY_FAILED" in attempt.error
        assert secure.requests == []

        trusting = ssl.create_default_context(cafile=cert)
        monkeypatch.setattr(transport, "_tls_context", lambda: trusting)
        time_passes()
        run_webhooks()
        (request,) = secure.requests
        assert request.headers["host"] == f"hooks.acme-app.example:{secure.port}"
        assert WebhookDelivery.objects.get().state == State.SUCCEEDED
