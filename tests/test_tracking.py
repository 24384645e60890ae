"""Open and click tracking and one-click unsubscribe: rewritten in the worker before DKIM signing, then followed
over the tracking endpoints."""

from __future__ import annotations

import email
import re
from email import policy
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import dkim
import pytest
from django.test import Client

from sending.feedback.tracking import click_url, html_tracked, message_tracked
from sending.models import Domain, Event, EventType, Message, Recipient, RecipientState, Suppression
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim
from tests.test_delivery import dns_txt

pytestmark = pytest.mark.django_db

HTML = (
    '<html><body><p>Hi Jane,</p><a href="https://shop.example/order?id=7&amp;ref=mail">your order</a> '
    "<a href='mailto:help@acme.example'>help</a> "
    '<a data-postwerk-track="off" href="https://acme.example/privacy">privacy</a></body></html>'
)
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"


@pytest.fixture(autouse=True)
def tracking_host(settings):
    settings.POSTWERK_TRACKING_HOST = "track.postwerk.example"
    settings.POSTWERK_TRACKING_SCHEME = "https"


def tracking_host_published(api, zone, domain, **settings: object) -> dict:
    """Publish acme.example's tracking CNAME and PATCH the domain's tracking `settings` (which checks it)."""
    zone.add("track.acme.example", "CNAME", "track.postwerk.example.")
    response = api.patch(f"/api/v1/domains/{domain.pk}/tracking", settings, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def tracked(api, zone, mx, domain):
    """acme.example tracking opens and clicks, with unsubscribe headers for `newsletter`, CNAME published."""
    body = tracking_host_published(api, zone, domain, opens=True, clicks=True, unsubscribe_tags=["newsletter"])
    assert body["tracking_host_ok"] and body["base_url"] == "https://track.acme.example"
    assert body["record"] == {"type": "CNAME", "name": "track.acme.example", "value": "track.postwerk.example"}
    publish_dkim(zone, domain)
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    return mx("127.0.0.2")


def send(api, to="jane@dest.example", **extra):
    body = {"from": "hello@acme.example", "to": [to], "subject": "Your order", "text": "Hi", "html": HTML, **extra}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def html_of(data: bytes) -> str:
    return email.message_from_bytes(data, policy=policy.default).get_body(("html",)).get_content()


def path_of(url: str) -> str:
    return urlsplit(url).path


def links(html: str) -> list[str]:
    return [a or b for a, b in re.findall(r"""href=(?:"([^"]+)"|'([^']+)')""", html)]


def test_rewritten_links_redirect_to_the_original_and_the_copy_is_dkim_signed(api, zone, tracked):
    send(api, tags=["newsletter"])
    assert deliver_queued() == 1
    (received,) = tracked.messages
    assert dkim.verify(received.data, dnsfunc=dns_txt(zone))  # rewritten before signing
    html = html_of(received.data)
    tracked_link, mailto, private = links(html)
    assert tracked_link.startswith("https://track.acme.example/t/c/")
    assert mailto == "mailto:help@acme.example" and private == "https://acme.example/privacy"
    assert "shop.example" not in html

    client = Client()
    response = client.get(path_of(tracked_link), HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/order?id=7&ref=mail"
    click = Event.objects.get(type=EventType.CLICKED)
    recipient = Recipient.objects.get()
    assert click.recipient_id == recipient.pk and click.sequence == 4  # queued, sent, delivered, clicked
    assert click.details == {
        "address": "jane@dest.example",
        "url": "https://shop.example/order?id=7&ref=mail",
        "user_agent": BROWSER,
        "ip": "198.51.100.7",
    }
    client.get(path_of(tracked_link))
    assert Event.objects.filter(type=EventType.CLICKED).count() == 2  # every click counts


def test_an_altered_link_is_refused_and_redirects_nowhere(api, tracked):
    send(api)
    deliver_queued()
    tracked_link = links(html_of(tracked.messages[0].data))[0]
    token = path_of(tracked_link).rsplit("/", 1)[1]
    client = Client()
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, token[:-1], "x" + token):
        response = client.get(f"/t/c/{bad}")
        assert response.status_code == 404 and "Location" not in response
    # Another URL under the genuine signature's recipient: a token Postwerk never made is refused too.
    recipient = Recipient.objects.get()
    forged = click_url("https://track.acme.example", recipient.pk, "https://evil.example/")
    payload, signature = path_of(forged).rsplit("/", 1)[1].rsplit(":", 1)
    assert client.get(f"/t/c/{payload}:{token.rsplit(':', 1)[1]}").status_code == 404
    assert client.get(f"/t/c/{payload}:{signature}").status_code == 302  # only its own signature works
    assert not Event.objects.filter(type=EventType.CLICKED, details__url="https://shop.example/order?id=7&ref=mail")


def test_an_open_is_recorded_once_with_its_user_agent_and_proxies_are_flagged(api, tracked):
    send(api)
    deliver_queued()
    html = html_of(tracked.messages[0].data)
    (pixel,) = re.findall(r'<img src="([^"]+)" width="1" height="1"', html)
    assert pixel.startswith("https://track.acme.example/t/o/") and html.index(pixel) < html.index("</body>")

    client = Client()
    proxy = client.get(path_of(pixel), HTTP_USER_AGENT="Mozilla/5.0 (via ggpht.com GoogleImageProxy)")
    assert proxy.status_code == 200 and proxy["Content-Type"] == "image/gif"
    apple = client.get(path_of(pixel), HTTP_USER_AGENT="Mozilla/5.0", REMOTE_ADDR="17.58.1.2")
    assert apple.status_code == 200
    recipient = Recipient.objects.get()
    assert recipient.opened_at is None and recipient.machine_opened_at is not None  # no person has opened it yet

    for _ in range(2):
        response = client.get(path_of(pixel), HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
        assert response.status_code == 200 and response.content.startswith(b"GIF89a")
        assert response["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    opens = list(Event.objects.filter(type=EventType.OPENED).order_by("id"))
    assert [(e.details["machine"], e.details.get("machine_reason")) for e in opens] == [
        (True, "user agent GoogleImageProxy"),
        (False, None),
    ]
    human = opens[1]
    assert (human.details["user_agent"], human.details["ip"], human.sequence) == (BROWSER, "198.51.100.7", 5)
    recipient.refresh_from_db()
    assert recipient.opened_at is not None
    assert Client().get("/t/o/not-a-token").status_code == 404


def test_one_click_unsubscribe_suppresses_the_address_for_the_organization(api, zone, tracked):
    send(api, tags=["newsletter"])
    send(api, to="bob@dest.example", tags=["receipt"])  # not a tagged stream: no unsubscribe headers
    deliver_queued()
    by_rcpt = {m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=policy.default) for m in tracked.messages}
    jane, bob = by_rcpt["jane@dest.example"], by_rcpt["bob@dest.example"]
    assert bob["List-Unsubscribe"] is None
    assert jane["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = jane["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://track.acme.example/t/u/")
    signed = jane["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
    assert "list-unsubscribe:list-unsubscribe-post" in signed.lower()

    client = Client(enforce_csrf_checks=True)
    page = client.get(path_of(url))  # a scanner following the link changes nothing
    assert page.status_code == 200 and b"<form" in page.content
    assert not Suppression.objects.exists()
    # RFC 8058 §3.1: the mailbox provider POSTs "List-Unsubscribe=One-Click", no cookies, no CSRF token.
    response = client.post(path_of(url), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason, suppression.created_by) == (
        "jane@dest.example",
        Suppression.Reason.UNSUBSCRIBE,
        "unsubscribe",
    )
    event = Event.objects.get(type=EventType.UNSUBSCRIBED)
    assert event.details["method"] == "one-click" and event.sequence == 4
    client.post(path_of(url), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert Event.objects.filter(type=EventType.UNSUBSCRIBED).count() == 1

    again = send(api, tags=["newsletter"])
    assert again["recipients"][0]["status"] == RecipientState.SUPPRESSED
    assert Client().post("/t/u/forged:token").status_code == 404


def test_domains_that_do_not_track_send_the_message_as_built(api, zone, mx, domain):
    publish_dkim(zone, domain)
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sink = mx("127.0.0.2")
    send(api, tags=["newsletter"])
    deliver_queued()
    data = sink.messages[0].data
    assert b"/t/" not in data and b"List-Unsubscribe" not in data
    assert links(html_of(data))[0] == "https://shop.example/order?id=7&amp;ref=mail"
    assert Domain.objects.get().track_opens is False


def test_until_the_cname_is_seen_links_use_the_platform_tracking_host(api, zone, mx, domain):
    response = api.patch(f"/api/v1/domains/{domain.pk}/tracking", {"clicks": True}, format="json").json()
    assert response["tracking_host_ok"] is False and response["base_url"] == "https://track.postwerk.example"
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sink = mx("127.0.0.2")
    send(api)
    deliver_queued()
    assert links(html_of(sink.messages[0].data))[0].startswith("https://track.postwerk.example/t/c/")
    assert api.patch("/api/v1/domains/999999/tracking", {}, format="json").status_code == 404


def test_rewriting_is_pure_and_leaves_text_parts_and_attachments_alone():
    page = html_tracked("<p><a href='http://a.example/x'>x</a></p>", pixel="https://t/o/1", link=lambda u: "L:" + u)
    assert page == (
        '<p><a href="L:http://a.example/x">x</a></p><img src="https://t/o/1" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )
    raw = (
        b"From: a@acme.example\r\nTo: b@dest.example\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nhttp://a.example/x\r\n"
    )
    assert message_tracked(raw, pixel="https://t/o/1", link=lambda u: "L:" + u) == raw
    with_header = message_tracked(raw, unsubscribe="https://t/u/1")
    assert b"List-Unsubscribe: <https://t/u/1>\r\n" in with_header
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in with_header
    own = raw.replace(b"Subject: t\r\n", b"Subject: t\r\nList-Unsubscribe: <mailto:u@acme.example>\r\n")
    assert message_tracked(own, unsubscribe="https://t/u/1") == own  # the sender's own header wins


# --- what goes on the wire, as raw bytes at the receiving MX --------------------------------------------------
#
# Python's parser decodes RFC 2047 words and unfolds, which is how List-Unsubscribe went out as encoded words
# unnoticed: these read the bytes as the receiver does.

LONG_TOKEN = "tok_" + "A1b2C3d4" * 20  # a word longer than a line: Python's own policy encoded it
LONG_NOTE = " ".join(f"word{i}" for i in range(40))
LONG_URL = "https://shop.example/catalogue/" + "spring-collection/" * 8 + "?utm_source=mail&amp;id=" + "7" * 40


def wire_fields(data: bytes) -> list[tuple[str, bytes]]:
    """The header fields as they arrived: (lower-case name, the whole field, folding and all)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [(f.split(b":", 1)[0].decode().lower(), f) for f in re.split(rb"\r\n(?![ \t])", head)]


def wire_field(data: bytes, name: str) -> bytes:
    (field,) = [f for n, f in wire_fields(data) if n == name.lower()]
    return field


def assert_plain_wire_headers(data: bytes, zone, message: Message, *, campaign: str) -> tuple[str, list[str]]:
    """Every header Postwerk writes or rewrites, checked as sent; returns the unsubscribe URL and tracked links."""
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head and all(len(line) <= 998 for line in head.split(b"\r\n"))
    unsubscribe = wire_field(data, "List-Unsubscribe")
    assert re.fullmatch(rb"List-Unsubscribe: <https://track\.acme\.example/t/u/[!-;=?-~]+>", unsubscribe), unsubscribe
    assert wire_field(data, "List-Unsubscribe-Post") == b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    assert wire_field(data, "Message-ID") == f"Message-ID: {message.message_id}".encode()
    date = wire_field(data, "Date").decode().split(": ", 1)[1]
    assert abs((parsedate_to_datetime(date) - message.created_at).total_seconds()) < 3600
    organization = message.organization_id
    assert wire_field(data, "Feedback-ID") == f"Feedback-ID: {campaign}:{organization}:acme.example:postwerk".encode()

    assert dkim.verify(data, dnsfunc=dns_txt(zone))
    signatures = [f for n, f in wire_fields(data) if n == "dkim-signature"]
    assert signatures and data.startswith(signatures[0])
    for signature in signatures:
        tags = dict(t.split("=", 1) for t in re.sub(r"\s", "", signature.decode().split(":", 1)[1]).split(";") if t)
        signed = set(tags["h"].split(":"))
        assert {"list-unsubscribe", "list-unsubscribe-post", "feedback-id", "message-id", "date"} <= signed

    html_head, html = data.split(b"Content-Type: text/html", 1)[1].split(b"\r\n\r\n", 1)
    assert b"Content-Transfer-Encoding: 7bit" in html_head
    tracked_links = re.findall(rb'href="(https://track\.acme\.example/t/c/[^"]+)"', html)
    assert tracked_links and b"href=3D" not in html and b"shop.example" not in html
    return unsubscribe.decode()[len("List-Unsubscribe: <") : -1], [link.decode() for link in tracked_links]


def test_headers_and_links_go_out_plain_with_long_values(api, zone, tracked, domain):
    response = api.patch(f"/api/v1/domains/{domain.pk}/tracking", {"unsubscribe_tags": ["*"]}, format="json")
    assert response.status_code == 200
    html = HTML.replace("https://shop.example/order?id=7&amp;ref=mail", LONG_URL)
    tag = "Spring sale 2026/" + "x" * 80
    send(api, html=html, tags=[tag, "newsletter"], headers={"X-Token": LONG_TOKEN, "X-Note": LONG_NOTE})
    assert deliver_queued() == 1
    (received,) = tracked.messages
    data = received.data
    message = Recipient.objects.get().message

    campaign = "Spring-sale-2026-" + "x" * 47  # the first tag, safe characters only, 64 at most
    url, (link,) = assert_plain_wire_headers(data, zone, message, campaign=campaign)
    # The sender's own long headers: the unbreakable one on one line, the other folded at its spaces only.
    assert wire_field(data, "X-Token") == f"X-Token: {LONG_TOKEN}".encode()
    note = wire_field(data, "X-Note")
    assert note.replace(b"\r\n", b"") == f"X-Note: {LONG_NOTE}".encode()
    assert b"\r\n" in note and all(len(line) <= 78 for line in note.split(b"\r\n"))

    client = Client()
    redirect = client.get(path_of(link), HTTP_USER_AGENT=BROWSER)
    assert redirect.status_code == 302 and redirect["Location"] == LONG_URL.replace("&amp;", "&")
    post = client.post(path_of(url), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert post.status_code == 200
    assert Suppression.objects.get().address == "jane@dest.example"


# --- a message's own tracking (track_opens / track_clicks) ------------------------------------------------------

PIXEL_ON_WIRE = b'<img src="https://track.acme.example/t/o/'
LINK_ON_WIRE = b'href="https://track.acme.example/t/c/'


def received_for(sink, address: str) -> bytes:
    (received,) = [m for m in sink.messages if address in m.rcpt_tos]
    return received.data


def test_a_message_turns_off_the_tracking_its_domain_does(api, tracked):
    plain_id = send(api, to="plain@dest.example", track_opens=False, track_clicks=False)["id"]
    detail = api.get(f"/api/v1/messages/{plain_id}").json()
    assert (detail["track_opens"], detail["track_clicks"]) == (False, False)
    send(api, to="noopen@dest.example", track_opens=False)
    send(api, to="default@dest.example", track_opens=None, track_clicks=None)
    assert list(Message.objects.order_by("created_at").values_list("track_opens", "track_clicks")) == [
        (False, False),
        (False, None),
        (None, None),
    ]
    assert deliver_queued() == 3
    plain = received_for(tracked, "plain@dest.example")
    assert b"/t/o/" not in plain and b"/t/c/" not in plain and b"track.acme.example" not in plain
    assert links(html_of(plain))[0] == "https://shop.example/order?id=7&amp;ref=mail"
    noopen = received_for(tracked, "noopen@dest.example")
    assert b"/t/o/" not in noopen and LINK_ON_WIRE in noopen
    default = received_for(tracked, "default@dest.example")
    assert PIXEL_ON_WIRE in default and LINK_ON_WIRE in default


def test_a_message_turns_on_tracking_its_domain_does_not(api, zone, mx, domain):
    body = tracking_host_published(api, zone, domain)
    assert (body["opens"], body["clicks"], body["tracking_host_ok"]) == (False, False, True)
    publish_dkim(zone, domain)
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    sink = mx("127.0.0.2")
    send(api, to="opens@dest.example", track_opens=True)
    send(api, to="clicks@dest.example", track_clicks=True)
    send(api, to="none@dest.example")
    assert deliver_queued() == 3
    opens = received_for(sink, "opens@dest.example")
    assert PIXEL_ON_WIRE in opens and b"/t/c/" not in opens
    assert dkim.verify(opens, dnsfunc=dns_txt(zone))
    clicks = received_for(sink, "clicks@dest.example")
    assert LINK_ON_WIRE in clicks and b"/t/o/" not in clicks
    assert links(html_of(clicks))[0].startswith("https://track.acme.example/t/c/")
    untouched = received_for(sink, "none@dest.example")
    assert b"/t/" not in untouched


def test_a_message_overrides_its_streams_tracking_default(api, tracked):
    response = api.post("/api/v1/streams", {"name": "news", "kind": "broadcast", "track_opens": True}, format="json")
    assert response.status_code == 201, response.json()
    api.patch(f"/api/v1/domains/{Domain.objects.get().pk}/tracking", {"opens": False}, format="json")
    html = HTML.replace("</body>", '<a href="https://acme.example/u">unsubscribe</a></body>')
    send(api, to="stream@dest.example", stream="news", html=html)
    send(api, to="message@dest.example", stream="news", html=html, track_opens=False)
    assert deliver_queued() == 2
    assert PIXEL_ON_WIRE in received_for(tracked, "stream@dest.example")
    assert b"/t/o/" not in received_for(tracked, "message@dest.example")


def test_tracking_asked_of_a_domain_without_a_tracking_host_is_refused_naming_the_field(api, domain):
    body = {"from": "hello@acme.example", "to": ["jane@dest.example"], "subject": "Hi", "html": HTML}
    response = api.post("/api/v1/messages", {**body, "track_opens": True}, format="json")
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert list(fields) == ["track_opens"] and "track.acme.example" in fields["track_opens"][0]
    response = api.post("/api/v1/messages", {**body, "track_opens": True, "track_clicks": True}, format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"track_opens", "track_clicks"}
    response = api.post("/api/v1/messages", {**body, "track_clicks": "maybe"}, format="json")
    assert response.status_code == 400 and list(response.json()["fields"]) == ["track_clicks"]
    assert not Message.objects.exists()

    batch = api.post(
        "/api/v1/messages/batch",
        [{**body, "track_clicks": True}, {**body, "track_opens": False, "track_clicks": False}],
        format="json",
    )
    assert batch.status_code == 200 and (batch.json()["accepted"], batch.json()["rejected"]) == (1, 1)
    first, second = batch.json()["results"]
    assert (first["status"], first["error"], list(first["fields"])) == (400, "invalid", ["track_clicks"])
    assert second["status"] == 202
    assert Message.objects.get().track_opens is False  # turning tracking off needs no tracking host
