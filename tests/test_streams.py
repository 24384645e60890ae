"""Message streams (#23): every organization's `transactional` stream, broadcast streams, the `stream` field on the
send API and X-Postwerk-Stream over SMTP (stripped before delivery, checked as raw bytes at the MX)."""

from __future__ import annotations

import re
import smtplib
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts.services import organization_get_or_create, smtp_credential_create
from sending.feedback.suppressions import suppression_add
from sending.models import Message, Recipient, Stream, Suppression, WebhookDelivery
from sending.smtp.server import Listener, SmtpServer
from sending.webhooks.fanout import webhook_fanout
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim
from tests.servers import make_self_signed
from tests.test_smtp_submission import logged_in

pytestmark = pytest.mark.django_db(transaction=True)


def body(**extra):
    return {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "text": "Hello", **extra}


@pytest.fixture
def submission(settings, tmp_path, domain):
    settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY = make_self_signed(
        tmp_path, "smtp.postwerk.example"
    )
    server = SmtpServer([Listener("submission", "127.0.0.1", 0, False)]).start()
    yield server
    server.stop()


def app_client(submission, organization) -> smtplib.SMTP:
    """An SMTP client logged in to the submission server with a new credential `app`."""
    credential, password = smtp_credential_create(organization=organization, name="app")
    return logged_in(submission, (credential.username, password))


@pytest.fixture
def dest(zone, mx, domain):
    publish_dkim(zone, domain)
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    return mx("127.0.0.2")


def test_every_organization_has_its_transactional_stream(db):
    org, _ = organization_get_or_create(name="Streams Inc")
    (stream,) = Stream.objects.filter(organization=org)
    assert (stream.name, stream.kind) == ("transactional", "transactional")


def test_streams_api_lists_creates_gets_and_updates(api, organization):
    listed = api.get("/api/v1/streams").json()
    assert [s["name"] for s in listed] == ["transactional"]
    created = api.post("/api/v1/streams", {"name": "newsletter", "kind": "broadcast"}, format="json")
    assert created.status_code == 201, created.json()
    stream = created.json()
    assert (stream["name"], stream["kind"]) == ("newsletter", "broadcast")
    again = api.post("/api/v1/streams", {"name": "newsletter", "kind": "broadcast"}, format="json")
    assert again.status_code == 400 and list(again.json()["fields"]) == ["name"]
    second_transactional = api.post("/api/v1/streams", {"name": "other", "kind": "transactional"}, format="json")
    assert second_transactional.status_code == 400 and list(second_transactional.json()["fields"]) == ["kind"]
    changed = api.patch(f"/api/v1/streams/{stream['id']}", {"track_opens": True, "hourly_limit": 10}, format="json")
    assert changed.status_code == 200, changed.json()
    got = api.get(f"/api/v1/streams/{stream['id']}").json()
    assert (got["track_opens"], got["hourly_limit"], got["name"]) == (True, 10, "newsletter")


def test_a_stream_of_another_organization_is_404(api):
    other, _ = organization_get_or_create(name="Other")
    theirs = Stream.objects.get(organization=other)
    assert api.get(f"/api/v1/streams/{theirs.pk}").status_code == 404
    response = api.post("/api/v1/messages", body(stream="transactional"), format="json")
    assert response.status_code == 202


def test_send_names_its_stream_and_an_unknown_one_is_400_naming_the_field(api, organization):
    response = api.post("/api/v1/messages", body(stream="nope"), format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["stream"]
    assert Message.objects.count() == 0
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    accepted = api.post("/api/v1/messages", body(stream="news"), format="json")
    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["stream"] == "news"
    message = Message.objects.get()
    assert message.stream.name == "news"
    assert Recipient.objects.get().lane == "broadcast"
    default = api.post("/api/v1/messages", body(), format="json").json()
    assert default["stream"] == "transactional"


def test_batch_items_name_their_own_stream(api, organization):
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    response = api.post(
        "/api/v1/messages/batch", {"messages": [body(stream="news"), body(stream="missing"), body()]}, format="json"
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 400, 202]
    assert list(results[1]["fields"]) == ["stream"]
    assert [r["stream"] for r in (results[0], results[2])] == ["news", "transactional"]


def test_smtp_stream_header_chooses_the_stream_and_is_stripped_before_delivery(submission, organization, dest):
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    client = app_client(submission, organization)
    raw = (
        "From: App <app@acme.example>\r\nTo: jane@dest.example\r\nX-Postwerk-Stream: news\r\n"
        "List-Unsubscribe: <https://acme.example/u/1>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "Subject: Hi\r\n\r\nHello Jane\r\n"
    )
    client.sendmail("app@acme.example", ["jane@dest.example"], raw)
    client.quit()
    assert Message.objects.get().stream.name == "news"
    assert deliver_queued() == 1
    (received,) = dest.messages
    assert b"x-postwerk-stream" not in received.data.lower()
    assert b"\r\nList-Unsubscribe: <https://acme.example/u/1>\r\n" in received.data


def test_smtp_priority_header_makes_it_high_and_every_control_header_is_stripped_before_delivery(
    submission, organization, dest
):
    client = app_client(submission, organization)
    raw = (
        "From: App <app@acme.example>\r\nTo: jane@dest.example\r\nX-Postwerk-Priority: High\r\n"
        "X-Postwerk-Stream: transactional\r\nx-postwerk-anything: else\r\n folded on\r\n"
        "X-Keep: me\r\nSubject: Code\r\n\r\nX-Postwerk-Priority: high is body text\r\n"
    )
    client.sendmail("app@acme.example", ["jane@dest.example"], raw)
    client.sendmail("app@acme.example", ["jane@dest.example"], "From: app@acme.example\r\nSubject: N\r\n\r\nN\r\n")
    client.quit()
    high, normal = Message.objects.order_by("created_at")
    assert (high.priority, normal.priority) == ("high", "normal")
    assert [r.lane for r in Recipient.objects.order_by("created_at")] == ["high", ""]
    assert deliver_queued() == 2
    received = next(m.data for m in dest.messages if b"Subject: Code" in m.data)
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"x-postwerk" not in head.lower() and b"folded on" not in head
    assert b"\r\nX-Keep: me\r\n" in head
    assert body == b"X-Postwerk-Priority: high is body text\r\n"  # the body is the sender's, untouched


def test_smtp_unknown_priority_is_550_naming_the_header(submission, organization):
    client = app_client(submission, organization)
    raw = "From: app@acme.example\r\nTo: jane@dest.example\r\nX-Postwerk-Priority: urgent\r\n\r\nHi\r\n"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("app@acme.example", ["jane@dest.example"], raw)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"5.6.0 X-Postwerk-Priority must be one of normal, high"
    assert Message.objects.count() == 0


@pytest.mark.parametrize("name", ["X-Postwerk-Stream", "x-postwerk-priority", "X-Postwerk-Id"])
def test_api_refuses_control_headers_in_headers_naming_the_header(api, organization, name):
    response = api.post("/api/v1/messages", body(headers={name: "news"}), format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["headers"]
    assert list(response.json()["fields"]["headers"]) == [name]
    assert "use the stream and priority fields" in response.json()["fields"]["headers"][name][0]
    assert Message.objects.count() == 0


def test_smtp_unknown_stream_header_is_550_and_nothing_is_stored(submission, organization):
    client = app_client(submission, organization)
    raw = "From: app@acme.example\r\nTo: jane@dest.example\r\nX-Postwerk-Stream: nope\r\nSubject: Hi\r\n\r\nHi\r\n"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("app@acme.example", ["jane@dest.example"], raw)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1 No message stream named 'nope'")
    assert Message.objects.count() == 0


def test_smtp_credential_stream_applies_without_header(submission, organization, dest):
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    credential, password = smtp_credential_create(organization=organization, name="bulk")
    credential.stream = "news"
    credential.save(update_fields=["stream"])
    client = logged_in(submission, (credential.username, password))
    client.sendmail("app@acme.example", ["jane@dest.example"], "From: app@acme.example\r\nSubject: Hi\r\n\r\nHi\r\n")
    client.quit()
    assert Message.objects.get().stream.name == "news"


HTML = '<html><body><p>News</p><a href="https://acme.example/x">read</a></body></html>'


def test_broadcast_mail_gets_one_click_list_unsubscribe_at_the_mx(api, organization, dest, settings):
    settings.POSTWERK_TRACKING_SCHEME = "https"
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    api.post("/api/v1/messages", body(stream="news", html=HTML), format="json")
    api.post("/api/v1/messages", body(), format="json")
    assert deliver_queued() == 2
    broadcast, transactional = sorted(dest.messages, key=lambda m: b"List-Unsubscribe:" not in m.data)
    head = broadcast.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert re.search(rb"\r\nList-Unsubscribe: <https://mta\.postwerk\.example/t/u/[^>\s]+>\r\n", head), head
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head
    assert b"List-Unsubscribe" not in transactional.data


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"List-Unsubscribe": "<mailto:leave@acme.example>"}, "List-Unsubscribe"),
        ({"List-Unsubscribe": "<http://acme.example/u>"}, "List-Unsubscribe"),
        ({"List-Unsubscribe": "<https://acme.example/u>"}, "List-Unsubscribe-Post"),
        ({"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}, "List-Unsubscribe-Post"),
    ],
)
def test_broadcast_with_its_own_invalid_list_unsubscribe_is_400_naming_the_header(api, organization, headers, field):
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    response = api.post("/api/v1/messages", body(stream="news", headers=headers), format="json")
    assert response.status_code == 400, response.json()
    assert list(response.json()["fields"]["headers"]) == [field]
    assert Message.objects.count() == 0


def test_smtp_broadcast_with_invalid_list_unsubscribe_is_550(submission, organization):
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    client = app_client(submission, organization)
    raw = (
        "From: app@acme.example\r\nTo: jane@dest.example\r\nX-Postwerk-Stream: news\r\n"
        "List-Unsubscribe: <mailto:x@acme.example>\r\nSubject: Hi\r\n\r\nHi\r\n"
    )
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("app@acme.example", ["jane@dest.example"], raw)
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1 Broadcast mail needs an https URL in List-Unsubscribe")
    assert Message.objects.count() == 0


def test_an_unsubscribe_from_a_broadcast_does_not_stop_transactional_mail_a_hard_bounce_does(
    api, organization, dest, settings
):
    settings.POSTWERK_TRACKING_SCHEME = "https"
    news = Stream.objects.create(organization=organization, name="news", kind="broadcast")
    api.post("/api/v1/messages", body(stream="news"), format="json")
    assert deliver_queued() == 1
    url = re.search(rb"List-Unsubscribe: <(https://[^>]+)>", dest.messages[0].data).group(1).decode()
    response = Client().post(
        urlsplit(url).path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    suppression = Suppression.objects.get()
    assert (suppression.reason, suppression.stream_id) == ("unsubscribe", news.pk)

    again = api.post("/api/v1/messages", body(stream="news"), format="json").json()
    assert again["recipients"][0]["status"] == "suppressed"
    reset = api.post("/api/v1/messages", body(subject="Password reset"), format="json").json()
    assert reset["recipients"][0]["status"] == "queued"

    suppression_add(organization_id=organization.pk, address="jane@dest.example", reason="hard_bounce")
    bounced = api.post("/api/v1/messages", body(subject="Password reset"), format="json").json()
    assert bounced["recipients"][0]["status"] == "suppressed"


def test_a_streams_tracking_defaults_replace_the_domains_at_the_mx(api, organization, dest):
    """The domain tracks nothing; the `news` stream tracks opens: its mail reaches the MX with an open pixel, the
    transactional mail of the same domain as built."""
    Stream.objects.create(organization=organization, name="news", kind="broadcast", track_opens=True)
    html = '<html><body><p>Hi</p><a href="https://acme.example/x">read</a></body></html>'
    api.post("/api/v1/messages", body(stream="news", subject="News", html=html), format="json")
    api.post("/api/v1/messages", body(subject="Reset", html=html), format="json")
    assert deliver_queued() == 2
    received = {re.search(rb"\r\nSubject: (\w+)\r\n", m.data).group(1): m.data for m in dest.messages}
    assert re.search(rb'<img [^>]*src="https?://[^"]+/t/o/[^"]+"', received[b"News"])
    assert b'href="https://acme.example/x"' in received[b"News"]  # clicks: the domain's default, off
    assert b"/t/" not in received[b"Reset"]


def test_webhook_endpoint_filtered_by_stream_gets_only_that_streams_events(api, organization, settings):
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    Stream.objects.create(organization=organization, name="news", kind="broadcast")
    created = api.post("/api/v1/webhooks", {"url": "https://127.0.0.9/x", "streams": ["news"]}, format="json").json()
    assert created["streams"] == ["news"]
    bad = api.post("/api/v1/webhooks", {"url": "https://127.0.0.9/y", "streams": ["nope"]}, format="json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["streams"]
    news = api.post("/api/v1/messages", body(stream="news"), format="json").json()
    api.post("/api/v1/messages", body(), format="json")
    webhook_fanout()
    events = WebhookDelivery.objects.filter(endpoint_id=created["id"]).values_list("event__message_id", flat=True)
    assert [str(m) for m in events] == [news["id"]]


def test_a_streams_own_send_limit_holds_its_mail_not_the_other_streams(api, organization):
    Stream.objects.create(organization=organization, name="news", kind="broadcast", hourly_limit=1)
    first = api.post("/api/v1/messages", body(stream="news"), format="json").json()
    second = api.post("/api/v1/messages", body(stream="news"), format="json").json()
    other = api.post("/api/v1/messages", body(), format="json").json()
    assert [first["status"], second["status"], other["status"]] == ["queued", "held", "queued"]
    held = Recipient.objects.get(message_id=second["id"])
    assert held.held_reason == "send_limit"
    assert held.events.get(type="held").details["stream"] == "news"


def test_concurrent_requests_never_pass_a_streams_send_limit_together(organization, domain):
    """Eight requests of three messages each, sent at the same moment into a stream limited to ten an hour, each
    with its own key: the atomic counter admits exactly ten between them, whatever the interleaving (on PostgreSQL
    they really overlap)."""
    from accounts.services import api_key_create
    from sending.models import StreamSendCounter

    Stream.objects.create(organization=organization, name="news", kind="broadcast", hourly_limit=10)
    keys = [api_key_create(organization=organization, name=f"key{n}")[1] for n in range(8)]
    start = threading.Barrier(8)

    def post(n: int) -> list[str]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {keys[n]}")
        messages = [body(stream="news", to=[f"r{n}-{i}@dest.example"]) for i in range(3)]
        try:
            start.wait()
            answer = client.post("/api/v1/messages/batch", {"messages": messages}, format="json")
            assert answer.status_code == 200, answer.content
            return [r["recipients"][0]["status"] for r in answer.json()["results"]]
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for result in pool.map(post, range(8)) for s in result]
    assert sorted(statuses) == ["held"] * 14 + ["queued"] * 10
    assert Recipient.objects.filter(state="queued").count() == 10
    assert StreamSendCounter.objects.get(period="hour").count == 10


def test_mail_a_stream_limit_held_goes_only_when_the_streams_window_reopens(api, organization, monkeypatch):
    import types
    from datetime import UTC, datetime, timedelta

    from sending.reputation import holds
    from sending.reputation.holds import send_limit_release

    now = datetime(2030, 5, 6, 12, 30, tzinfo=UTC)
    monkeypatch.setattr(holds, "timezone", types.SimpleNamespace(now=lambda: now))
    Stream.objects.create(organization=organization, name="news", kind="broadcast", hourly_limit=1)
    statuses = [api.post("/api/v1/messages", body(stream="news"), format="json").json()["status"] for _ in range(3)]
    assert statuses == ["queued", "held", "held"]
    # The organization has no limit of its own, but the stream's window is still full: nothing goes.
    assert send_limit_release(now + timedelta(minutes=10)) == 0
    assert send_limit_release(now + timedelta(hours=1)) == 1  # the next window admits one
    assert send_limit_release(now + timedelta(hours=1)) == 0
    assert send_limit_release(now + timedelta(hours=2)) == 1
    assert Recipient.objects.filter(state="held").count() == 0


def test_a_stream_is_a_reputation_scope_of_its_own(api, organization):
    from sending.reputation.rates import reputations_for

    news = Stream.objects.create(organization=organization, name="news", kind="broadcast")
    scopes = {(r.scope, r.scope_id): r.scope_name for r in reputations_for(organization.pk)}
    assert scopes[("stream", news.pk)] == "stream news"
    reputation = next(r for r in reputations_for(organization.pk) if r.scope == "stream" and r.scope_id == news.pk)
    reputation.state = "paused"
    reputation.save()
    from sending.reputation.rates import paused_scopes_clear

    paused_scopes_clear()
    held = api.post("/api/v1/messages", body(stream="news"), format="json").json()
    transactional = api.post("/api/v1/messages", body(), format="json").json()
    assert (held["status"], transactional["status"]) == ("held", "queued")
    paused_scopes_clear()
