"""django-anymail's Postmark backend and its Postmark tracking webhook view, unmodified, in an application of its
own (tests/servers/anymail_app, run in subprocesses with its own Django settings), against a Postwerk server on
loopback: what anymail returns, what the recipient's MX receives, and the tracking signals anymail fires for
Postwerk's Postmark-shaped webhooks."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests

from sending.feedback.suppressions import suppression_add
from sending.feedback.tracking import click_url, open_url, unsubscribe_url
from sending.models import Message, Recipient, Suppression
from sending.states import complaint_recorded
from tests.conftest import _free_port_on_all, deliver_queued
from tests.servers.anymail_app import PNG
from tests.test_webhooks import run_webhooks

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
APP = "tests.servers.anymail_app.app"


def app_env(live_server, api_key: str, **extra: str) -> dict[str, str]:
    # The settings an application moving from Postmark changes: the API URL and the token (README).
    return {**os.environ, "POSTWERK_URL": live_server.url + "/", "POSTWERK_API_KEY": api_key, **extra}


def anymail_send(live_server, api_key: str, case: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", APP, "send", case],
        cwd=ROOT,
        env=app_env(live_server, api_key),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_anymail_sends_attachments_inline_images_tags_and_metadata(live_server, api_key, dest):
    result = anymail_send(live_server, api_key, "full")
    message = Message.objects.get()
    assert result["status"] == ["sent"] and result["message_id"] == str(message.id)
    assert result["recipients"] == {
        "jane@dest.example": {"status": "sent", "message_id": str(message.id)},
        "bob@dest.example": {"status": "sent", "message_id": str(message.id)},
    }
    assert (message.tags, message.metadata) == (["order"], {"order_id": "1234", "user": "42"})

    assert deliver_queued() == 2
    (raw,) = [m.data for m in dest.messages if m.rcpt_tos == ["jane@dest.example"]]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nFrom: Acme <hello@acme.example>\r\n" in head
    assert b"\r\nTo: Jane Doe <jane@dest.example>\r\n" in head
    assert b"\r\nCc: bob@dest.example\r\n" in head
    assert b"\r\nReply-To: Support <support@acme.example>\r\n" in head
    assert b"\r\nSubject: Your order 1234\r\n" in head
    assert b"\r\nX-Campaign: spring\r\n" in head
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed.get_body(("plain",)).get_content().strip() == "Thanks for your order."
    html = parsed.get_body(("html",)).get_content()
    cid = re.search(r'src="cid:([^"]+)"', html).group(1)
    parts = {part.get_filename(): part for part in parsed.walk() if part.get_filename()}
    assert parts["invoice.pdf"].get_content() == b"%PDF-1.4 invoice"
    assert parts["invoice.pdf"].get_content_disposition() == "attachment"
    assert parts["logo.png"].get_content() == PNG and parts["logo.png"]["Content-ID"] == f"<{cid}>"
    assert parts["logo.png"].get_content_disposition() == "inline"
    assert base64.b64encode(b"%PDF-1.4 invoice") in raw


def test_anymail_templates_and_batch_with_merge_data(live_server, api_key, dest, welcome):
    single = anymail_send(live_server, api_key, "template")
    assert single["status"] == ["sent"]
    batch = anymail_send(live_server, api_key, "batch")
    assert batch["status"] == ["sent"]
    ids = {address: r["message_id"] for address, r in batch["recipients"].items()}
    assert set(ids) == {"jane@dest.example", "bob@dest.example"} and len(set(ids.values())) == 2
    assert {str(m.id): m.metadata for m in Message.objects.filter(pk__in=ids.values())} == {
        ids["jane@dest.example"]: {"user": "1"},
        ids["bob@dest.example"]: {"user": "2"},
    }
    assert deliver_queued() == 3
    texts = sorted(re.search(rb"Hello \w+, from the Acme team\.", m.data).group(0) for m in dest.messages)
    assert texts == [
        b"Hello Bob, from the Acme team.",
        b"Hello Jane, from the Acme team.",
        b"Hello Jane, from the Acme team.",
    ]
    subjects = sorted(re.search(rb"\r\nSubject: ([^\r]*)\r\n", m.data).group(1) for m in dest.messages)
    assert subjects == [b"Welcome, Bob", b"Welcome, Jane", b"Welcome, Jane"]


def test_anymail_reports_inactive_recipients_as_rejected(live_server, api_key, organization, dest):
    suppression_add(organization_id=organization.pk, address="gone@dest.example", reason=Suppression.Reason.MANUAL)
    result = anymail_send(live_server, api_key, "suppressed")
    message = Message.objects.get()
    assert result["recipients"] == {
        "jane@dest.example": {"status": "sent", "message_id": str(message.id)},
        "gone@dest.example": {"status": "rejected", "message_id": None},
    }
    assert deliver_queued() == 1
    assert [m.rcpt_tos for m in dest.messages] == [["jane@dest.example"]]


def test_anymail_with_a_bad_token_gets_an_error_and_nothing_is_sent(live_server, api_key, dest):
    result = anymail_send(live_server, "pw_live_nope", "full")
    assert result["error"] == "AnymailRequestsAPIError" and result["status_code"] == 401
    assert "ErrorCode" in result["text"] or "10" in result["text"]
    assert Message.objects.count() == 0 and deliver_queued() == 0 and dest.messages == []


@pytest.fixture
def anymail_webhooks(live_server, api_key, tmp_path):
    """anymail's webhook URLs served by the application on loopback; yields (url, events file)."""
    events = tmp_path / "events.jsonl"
    events.touch()
    port = _free_port_on_all(["127.0.0.1"])
    env = app_env(live_server, api_key, ANYMAIL_WEBHOOK_SECRET="hook:s3cret")
    process = subprocess.Popen(  # noqa: S603 - our own test application
        [sys.executable, "-m", APP, "serve", str(port), str(events)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        yield f"http://hook:s3cret@127.0.0.1:{port}/anymail/postmark/tracking/", events
    finally:
        process.terminate()
        process.wait(timeout=10)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_anymail_tracking_view_takes_postwerks_postmark_webhooks(live_server, api, anymail_webhooks, dest, settings):
    settings.POSTWERK_WEBHOOK_ALLOW_HTTP = True
    settings.POSTWERK_WEBHOOK_ALLOW_PRIVATE = True
    url, events_file = anymail_webhooks
    created = api.post("/api/v1/webhooks", {"url": url, "payload_format": "postmark"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["payload_format"] == "postmark"

    dest.rcpt_replies["gone@dest.example"] = "550 5.1.1 No such user"
    sent = []
    for to in ("jane@dest.example", "gone@dest.example"):
        body = {"from": "hello@acme.example", "to": [to], "subject": "Hi", "text": "Hi", "tags": ["order"],
                "metadata": {"order_id": "7"}}  # fmt: skip
        response = api.post("/api/v1/messages", body, format="json")
        assert response.status_code == 202
        sent.append(response.json())
    assert deliver_queued() == 2
    jane = Recipient.objects.get(address="jane@dest.example")
    base = live_server.url
    assert requests.get(open_url(base, jane.pk), headers={"User-Agent": "Thunderbird"}, timeout=10).ok
    link = requests.get(click_url(base, jane.pk, "https://acme.example/order/7"), allow_redirects=False, timeout=10)
    assert link.status_code == 302
    complaint_recorded(jane, {"address": jane.address, "source": "arf"})
    one_click = {"List-Unsubscribe": "One-Click"}
    assert requests.post(unsubscribe_url(base, jane.pk), data=one_click, timeout=10).ok

    assert run_webhooks() == 6  # queued, sent and the like have no Postmark record and are not sent
    deadline = time.monotonic() + 10
    while len(read_events(events_file)) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = {e["event_type"]: e for e in read_events(events_file)}
    assert sorted(events) == ["bounced", "clicked", "complained", "delivered", "opened", "unsubscribed"]
    for event in events.values():
        assert event["esp_name"] == "Postmark"
        assert event["tags"] == ["order"] and event["metadata"] == {"order_id": "7"}
    assert events["delivered"]["recipient"] == "jane@dest.example"
    assert events["delivered"]["message_id"] == sent[0]["id"]
    assert events["delivered"]["mta_response"].startswith("250")
    bounced = events["bounced"]
    assert (bounced["recipient"], bounced["message_id"], bounced["reject_reason"]) == (
        "gone@dest.example",
        sent[1]["id"],
        "bounced",
    )
    assert "550 5.1.1" in bounced["mta_response"] and bounced["event_id"].isdigit()
    assert events["opened"]["user_agent"] == "Thunderbird"
    assert events["clicked"]["click_url"] == "https://acme.example/order/7"
    assert events["complained"]["reject_reason"] == "spam"
    assert events["unsubscribed"]["reject_reason"] == "unsubscribed"
    assert all(e["timestamp"] for e in events.values())
