"""The Postmark-compatible API with Postmark's own client library, postmarker, unmodified, pointed at a Postwerk
server on loopback: what postmarker returns, and the bytes the recipient's MX receives."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime

import pytest
import requests
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from accounts.scopes import Scope
from accounts.services import api_key_create
from sending.feedback.suppressions import suppression_add
from sending.models import Message, Recipient, RecipientState, Suppression
from tests.conftest import deliver_queued
from tests.test_tracking import tracking_host_published

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postmark(live_server, api_key) -> PostmarkClient:
    return PostmarkClient(server_token=api_key, root_api_url=live_server.url + "/")


def raw_for(sink, address: str) -> bytes:
    (received,) = [m for m in sink.messages if address in m.rcpt_tos]
    return received.data


def test_send_returns_postmarks_answer_and_the_mx_receives_every_field(postmark, dest):
    pdf = base64.b64encode(b"%PDF-1.4 invoice").decode()
    answer = postmark.emails.send(
        From="Acme <hello@acme.example>",
        To="Jane Doe <jane@dest.example>",
        Cc="bob@dest.example",
        Bcc="audit@dest.example",
        ReplyTo="support@acme.example",
        Subject="Your order 1234",
        TextBody="Thanks for your order.",
        HtmlBody="<p>Thanks for your order.</p>",
        Tag="order",
        Metadata={"order_id": "1234"},
        Headers={"X-Campaign": "spring"},
        Attachments=[("invoice.pdf", pdf, "application/pdf")],
        TrackOpens=False,
        TrackLinks="None",
        MessageStream="outbound",
    )
    message = Message.objects.get()
    assert answer["ErrorCode"] == 0 and answer["Message"] == "OK"
    assert answer["MessageID"] == str(message.id)
    assert answer["To"] == "Jane Doe <jane@dest.example>"
    assert datetime.fromisoformat(answer["SubmittedAt"]) == message.created_at
    assert message.stream.name == "transactional"
    assert (message.tags, message.metadata) == (["order"], {"order_id": "1234"})

    assert deliver_queued() == 3
    raw = raw_for(dest, "jane@dest.example")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nFrom: Acme <hello@acme.example>\r\n" in raw
    assert b"\r\nTo: Jane Doe <jane@dest.example>\r\n" in head
    assert b"\r\nCc: bob@dest.example\r\n" in head
    assert b"\r\nReply-To: support@acme.example\r\n" in head
    assert b"\r\nSubject: Your order 1234\r\n" in head
    assert b"\r\nX-Campaign: spring\r\n" in head
    assert b"audit@dest.example" not in raw and b"Bcc" not in head
    assert b'Content-Disposition: attachment; filename="invoice.pdf"' in raw
    assert base64.b64encode(b"%PDF-1.4 invoice") in raw
    assert b"Thanks for your order." in raw and b"<p>Thanks for your order.</p>" in raw
    assert sorted(r for m in dest.messages for r in m.rcpt_tos) == [
        "audit@dest.example",
        "bob@dest.example",
        "jane@dest.example",
    ]

    details = postmark.messages.outbound.get(answer["MessageID"])
    assert details.MessageID == answer["MessageID"]
    assert details.Status == "Sent" and details.Subject == "Your order 1234"
    assert details.Recipients == ["jane@dest.example", "bob@dest.example", "audit@dest.example"]
    assert details.To == [{"Email": "jane@dest.example", "Name": ""}]
    assert details.TextBody == "Thanks for your order.\n" and details.Tag == "order"
    assert details.MessageStream == "outbound" and details.Metadata == {"order_id": "1234"}
    assert sorted(e["Type"] for e in details.MessageEvents) == ["Delivered"] * 3


def test_batch_answers_each_message_on_its_own(postmark, dest):
    answers = postmark.emails.send_batch(
        {"From": "hello@acme.example", "To": "jane@dest.example", "Subject": "One", "TextBody": "1"},
        {"From": "hello@elsewhere.example", "To": "bob@dest.example", "Subject": "Two", "TextBody": "2"},
        {"From": "hello@acme.example", "To": "bob@dest..example", "Subject": "Three", "TextBody": "3"},
    )
    assert [a["ErrorCode"] for a in answers] == [0, 400, 300]
    assert answers[0]["MessageID"] == str(Message.objects.get().id) and answers[0]["To"] == "jane@dest.example"
    assert "elsewhere.example" in answers[1]["Message"]
    assert answers[2]["Message"] == "Invalid 'To' address: 'bob@dest..example'."
    assert deliver_queued() == 1
    assert [m.rcpt_tos for m in dest.messages] == [["jane@dest.example"]]
    assert b"\r\nSubject: One\r\n" in dest.messages[0].data


def test_templates_single_and_batch_render_each_model(postmark, dest, welcome):
    single = postmark.emails.send_with_template(
        TemplateAlias="welcome",
        TemplateModel={"name": "Jane", "team": "Acme"},
        From="hello@acme.example",
        To="jane@dest.example",
    )
    assert single["ErrorCode"] == 0
    by_id = postmark.emails.send_with_template(
        TemplateId=welcome.pk,
        TemplateModel={"name": "Ann", "team": "Acme"},
        From="hello@acme.example",
        To="ann@dest.example",
    )
    assert by_id["ErrorCode"] == 0
    batch = postmark.emails.send_template_batch(
        {"TemplateAlias": "welcome", "TemplateModel": {"name": "Bob", "team": "Acme"}, "From": "hello@acme.example",
         "To": "bob@dest.example"},
        {"TemplateAlias": "nope", "TemplateModel": {}, "From": "hello@acme.example", "To": "eve@dest.example"},
        {"TemplateAlias": "welcome", "TemplateModel": {"team": "Acme"}, "From": "hello@acme.example",
         "To": "eve@dest.example"},
    )  # fmt: skip
    assert [a["ErrorCode"] for a in batch] == [0, 1101, 1100]
    assert "name" in batch[2]["Message"]

    with pytest.raises(ClientError) as refused:
        postmark.emails.send_with_template(
            TemplateAlias="nope", TemplateModel={}, From="hello@acme.example", To="jane@dest.example"
        )
    assert refused.value.error_code == 1101

    assert deliver_queued() == 3
    subjects = {m.rcpt_tos[0]: re.search(rb"\r\nSubject: ([^\r]*)\r\n", m.data).group(1) for m in dest.messages}
    assert subjects == {
        "jane@dest.example": b"Welcome, Jane",
        "ann@dest.example": b"Welcome, Ann",
        "bob@dest.example": b"Welcome, Bob",
    }
    assert b"Hello Bob, from the Acme team." in raw_for(dest, "bob@dest.example")


def test_bounces_are_listed_and_fetched_as_postmark_bounces(postmark, dest):
    dest.rcpt_replies["gone@dest.example"] = "550 5.1.1 No such user"
    answer = postmark.emails.send(
        From="hello@acme.example", To="gone@dest.example", Subject="Hi", TextBody="Hi", Tag="welcome"
    )
    assert deliver_queued() == 1
    bounces = postmark.bounces.all(count=10, offset=0)
    assert len(bounces) == 1
    bounce = bounces[0]
    assert (bounce.Type, bounce.TypeCode, bounce.RecordType) == ("HardBounce", 1, "Bounce")
    assert bounce.Email == "gone@dest.example" and bounce.MessageID == answer["MessageID"]
    assert bounce.Tag == "welcome" and bounce.Inactive is True and bounce.Subject == "Hi"
    assert "550 5.1.1" in bounce.Details
    again = postmark.bounces.get(bounce.ID)
    assert again.as_dict() == bounce.as_dict()
    assert postmark.bounces.all(count=10, offset=0, type="SoftBounce") == []
    assert postmark.bounces.all(count=10, offset=0, emailFilter="nobody") == []

    # The hard bounce suppressed the address: the next message to it is Postmark's 406, and nothing is sent.
    with pytest.raises(ClientError) as inactive:
        postmark.emails.send(From="hello@acme.example", To="gone@dest.example", Subject="Again", TextBody="Hi")
    assert inactive.value.error_code == 406
    assert "Found inactive addresses: gone@dest.example." in str(inactive.value)
    assert deliver_queued() == 0
    assert not Recipient.objects.filter(state=RecipientState.QUEUED).exists()


def post(live_server, path: str, body: object, token: str | None, **headers: str) -> requests.Response:
    headers.setdefault("Content-Type", "application/json")
    if token is not None:
        headers["X-Postmark-Server-Token"] = token
    return requests.post(live_server.url + path, data=json.dumps(body), headers=headers, timeout=10)


def test_a_bad_or_missing_token_is_postmarks_401_and_nothing_is_sent(live_server, organization, domain, dest):
    body = {"From": "hello@acme.example", "To": "jane@dest.example", "Subject": "Hi", "TextBody": "Hi"}
    _, reader = api_key_create(organization=organization, name="reader", scopes=[Scope.MESSAGES_READ])
    for token in (None, "", "pw_live_nope", "Bearer nonsense", reader):
        for path in ("/email", "/email/batch", "/email/withTemplate", "/email/batchWithTemplates"):
            response = post(live_server, path, [body] if "batch" in path else body, token)
            assert response.status_code == 401, (token, path, response.text)
            answer = response.json()
            assert answer["ErrorCode"] == 10, answer
            assert answer["Message"].startswith("The Server Token you provided in the X-Postmark-Server-Token")
    with pytest.raises(ClientError) as refused:
        PostmarkClient(server_token="pw_live_nope", root_api_url=live_server.url + "/").emails.send(**body)
    assert refused.value.error_code == 10
    assert Message.objects.count() == 0
    assert deliver_queued() == 0 and dest.messages == []


def test_invalid_json_and_too_many_batch_messages_are_postmark_errors(live_server, api_key, settings):
    response = requests.post(
        live_server.url + "/email",
        data=b"{not json",
        headers={"X-Postmark-Server-Token": api_key, "Content-Type": "application/json"},
        timeout=10,
    )
    assert (response.status_code, response.json()["ErrorCode"]) == (422, 402)
    response = post(live_server, "/email", {}, api_key, **{"Content-Type": "text/plain"})
    assert (response.status_code, response.json()["ErrorCode"]) == (422, 409)
    settings.POSTWERK_BATCH_MAX_MESSAGES = 2
    message = {"From": "hello@acme.example", "To": "jane@dest.example", "Subject": "Hi", "TextBody": "Hi"}
    response = post(live_server, "/email/batch", [message] * 3, api_key)
    assert (response.status_code, response.json()["ErrorCode"]) == (422, 410)
    response = post(live_server, "/email", {**message, "MessageStream": "nope"}, api_key)
    assert (response.status_code, response.json()["ErrorCode"]) == (422, 1235)
    response = post(live_server, "/email", {**message, "TextBody": None}, api_key)
    assert response.status_code == 422
    assert response.json() == {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody or both."}
    response = post(live_server, "/email", {**message, "To": None}, api_key)
    assert response.json() == {"ErrorCode": 300, "Message": "Zero recipients specified."}
    assert Message.objects.count() == 0


def test_partly_suppressed_is_sent_to_the_rest_and_says_which_are_inactive(postmark, organization, dest):
    suppression_add(organization_id=organization.pk, address="gone@dest.example", reason=Suppression.Reason.MANUAL)
    answer = postmark.emails.send(
        From="hello@acme.example", To="jane@dest.example, gone@dest.example", Subject="Hi", TextBody="Hi"
    )
    assert answer["ErrorCode"] == 0
    assert answer["Message"].startswith(
        "Message OK, but will not deliver to these inactive addresses: gone@dest.example. Inactive recipients"
    )
    assert deliver_queued() == 1
    assert [m.rcpt_tos for m in dest.messages] == [["jane@dest.example"]]
    dump = requests.get(
        postmark.root_api_url + "message-streams/outbound/suppressions/dump",
        headers={"X-Postmark-Server-Token": postmark.server_token, "Accept": "application/json"},
        timeout=10,
    )
    assert dump.status_code == 200
    (row,) = dump.json()["Suppressions"]
    assert (row["EmailAddress"], row["SuppressionReason"], row["Origin"]) == (
        "gone@dest.example",
        "ManualSuppression",
        "Customer",
    )


def test_postmarks_fields_become_the_send_apis():
    from sending.compat.postmark.fields import PostmarkInvalid, postwerk_message, split_addresses

    assert split_addresses('"Doe, Jane" <jane@x.example>, bob@x.example,, (a, comment) c@x.example') == [
        '"Doe, Jane" <jane@x.example>',
        "bob@x.example",
        "(a, comment) c@x.example",
    ]
    translated = postwerk_message(
        {
            "From": "a@acme.example",
            "To": "b@x.example",
            "Subject": "",
            "Headers": [{"Name": "X-A", "Value": "1"}],
            "Attachments": [{"Name": "l.png", "Content": "eA==", "ContentType": "image/png", "ContentID": "cid:l@x"}],
            "Metadata": {"n": 4, "ok": True, "s": "x"},
            "MessageStream": "outbound",
            "Tag": "",
            "TrackOpens": True,
            "TemplateAlias": "ignored on /email",
        },
        template=False,
    )
    assert translated.message == {
        "from": ["a@acme.example"],
        "to": ["b@x.example"],
        "subject": "",
        "headers": {"X-A": "1"},
        "attachments": [{"filename": "l.png", "content": "eA==", "content_type": "image/png", "content_id": "l@x"}],
        "metadata": {"n": "4", "ok": "true", "s": "x"},
        "stream": "transactional",
        "track_opens": True,
    }
    for links, clicks in (("None", False), ("HtmlOnly", True), ("HtmlAndText", True)):
        translated = postwerk_message({"TrackLinks": links, "TrackOpens": False}, template=False)
        assert (translated.message["track_clicks"], translated.message["track_opens"]) == (clicks, False)
    for bad, problem in (
        ({"TrackLinks": "TextOnly"}, "Invalid 'TrackLinks': Postwerk tracks the links of the HTML body only"),
        ({"TrackLinks": "Always"}, "Invalid 'TrackLinks': one of None"),
        ({"TrackOpens": "yes"}, "Invalid 'TrackOpens'"),
    ):
        with pytest.raises(PostmarkInvalid, match=re.escape(problem)):
            postwerk_message(bad, template=False)
    templated = postwerk_message({"From": "a@acme.example", "TemplateId": 7, "Subject": ""}, template=True)
    assert (templated.message["template"], templated.message["model"]) == (7, {})
    assert "subject" not in templated.message


def test_track_opens_and_track_links_override_the_domains_tracking_per_message(
    postmark, live_server, api, api_key, zone, domain, dest, settings
):
    settings.POSTWERK_TRACKING_HOST, settings.POSTWERK_TRACKING_SCHEME = "track.postwerk.example", "https"
    html = '<html><body><a href="https://shop.example/order">your order</a></body></html>'
    message = {"From": "hello@acme.example", "Subject": "Your order", "TextBody": "Hi", "HtmlBody": html}

    # No tracking host yet: asking for tracking is ErrorCode 300 naming the field, and nothing is sent.
    with pytest.raises(ClientError) as refused:
        postmark.emails.send(To="jane@dest.example", TrackOpens=True, **message)
    assert refused.value.error_code == 300 and "Invalid 'TrackOpens'" in str(refused.value)
    answer = post(live_server, "/email", {**message, "To": "jane@dest.example", "TrackLinks": "TextOnly"}, api_key)
    assert answer.status_code == 422 and answer.json()["ErrorCode"] == 300
    assert "Invalid 'TrackLinks'" in answer.json()["Message"]
    assert not Message.objects.exists()

    tracking_host_published(api, zone, domain, opens=True, clicks=False)
    postmark.emails.send(To="off@dest.example", TrackOpens=False, TrackLinks="HtmlAndText", **message)
    postmark.emails.send(To="on@dest.example", TrackLinks="HtmlOnly", **message)
    postmark.emails.send(To="default@dest.example", **message)
    assert deliver_queued() == 3
    off = raw_for(dest, "off@dest.example")
    assert b"/t/o/" not in off and b'href="https://track.acme.example/t/c/' in off
    on = raw_for(dest, "on@dest.example")
    assert b'<img src="https://track.acme.example/t/o/' in on and b'href="https://track.acme.example/t/c/' in on
    default = raw_for(dest, "default@dest.example")
    assert b'<img src="https://track.acme.example/t/o/' in default and b"/t/c/" not in default
    assert b"Hi\r\n" in on  # the text part goes out as written: Postwerk rewrites HTML links only
