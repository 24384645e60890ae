"""The inbound spam check with a real SpamAssassin spamd on loopback (local rules only): GTUBE mail and plain
mail sent over real SMTP into the inbound listener, the verdict stored, added to the message as X-Spam-Status and
X-Spam-Score, and posted as SpamStatus/SpamScore; with no spamd configured, one that is down or one that never
answers, the mail is accepted all the same and "not checked", never given a made-up score."""

from __future__ import annotations

import json
import socket

import pytest

from sending.models import InboundMail
from tests.servers.spamd import spamd
from tests.test_bounces import inbound  # noqa: F401 - the inbound listener fixture
from tests.test_inbound_routes import (  # noqa: F401 - fixtures
    HOST,
    add_route,
    inbound_domain,
    message,
    receiver,
    run_posts,
    smtp_send,
    webhook_settings,
)

pytestmark = pytest.mark.django_db(transaction=True)
# ruff: noqa: F811 - tests take the imported fixtures by name

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def spamd_address():
    with spamd() as address:
        yield address


def gtube(to: str) -> bytes:
    raw = message(to)
    head, _, _ = raw.partition(b"\r\n\r\n")
    head = b"\r\n".join(
        line for line in head.split(b"\r\n") if not line.lower().startswith((b"content-", b"mime-version"))
    )
    # A sender's own verdict header: replaced by ours, never passed on as if it were ours.
    return head + b"\r\nX-Spam-Status: No, score=-5.0\r\n\r\n" + GTUBE.encode() + b"\r\n"


def header_values(payload: dict, name: str) -> list[str]:
    return [h["Value"] for h in payload["Headers"] if h["Name"] == name]


def test_spam_and_ham_are_checked_by_spamd_stored_marked_and_posted(
    api, inbound, inbound_domain, receiver, settings, spamd_address
):
    settings.POSTWERK_SPAMD_ADDRESS, settings.POSTWERK_SPAMD_TIMEOUT = spamd_address, 60.0
    add_route(api, f"support@{HOST}", "post", url=receiver.url())
    for raw in (gtube(f"support@{HOST}"), message(f"support@{HOST}")):
        _, (code, _) = smtp_send(inbound, [f"support@{HOST}"], raw)
        assert code == 250
    spam, ham = InboundMail.objects.order_by("received_at")
    assert spam.spam["checked"] is True and spam.spam["is_spam"] is True and spam.spam["threshold"] == 5.0
    assert spam.spam["score"] >= 1000 and "GTUBE" in spam.spam["rules"]
    assert ham.spam["checked"] is True and ham.spam["is_spam"] is False and ham.spam["threshold"] == 5.0
    assert ham.spam["score"] < 5.0 and "GTUBE" not in ham.spam["rules"]

    raw = bytes(spam.raw)
    assert raw.startswith(b"Authentication-Results: mta.postwerk.example;")
    status = (
        f"X-Spam-Status: Yes, score={spam.spam['score']:.1f} required=5.0\r\n\ttests={','.join(spam.spam['rules'])}"
    )
    assert status.encode() in raw and f"\r\nX-Spam-Score: {spam.spam['score']:.1f}\r\n".encode() in raw
    assert b"X-Spam-Status: No, score=-5.0" not in raw  # the sender's copy is gone
    assert raw.count(b"X-Spam-Status:") == 1

    assert run_posts() == 2
    posted = [json.loads(r.body) for r in receiver.requests]
    by_subject = {p["MessageID"]: p for p in posted}
    spam_post, ham_post = by_subject[str(spam.pk)], by_subject[str(ham.pk)]
    assert (spam_post["SpamStatus"], spam_post["SpamScore"]) == ("spam", spam.spam["score"])
    assert spam_post["SpamRules"] == spam.spam["rules"] and spam_post["SpamThreshold"] == 5.0
    assert header_values(spam_post, "X-Spam-Score") == [f"{spam.spam['score']:.1f}"]
    assert header_values(spam_post, "X-Spam-Status")[0].startswith(f"Yes, score={spam.spam['score']:.1f} required=5.0")
    assert (ham_post["SpamStatus"], ham_post["SpamScore"]) == ("ham", ham.spam["score"])
    assert header_values(ham_post, "X-Spam-Status")[0].startswith(f"No, score={ham.spam['score']:.1f} required=5.0")
    detail = api.get(f"/api/v1/inbound/{spam.pk}").json()
    assert detail["spam"] == spam.spam


def test_without_a_spam_checker_mail_is_not_checked_and_keeps_no_made_up_score(
    api, inbound, inbound_domain, receiver, settings
):
    settings.POSTWERK_SPAMD_ADDRESS = ""
    add_route(api, f"support@{HOST}", "post", url=receiver.url())
    assert smtp_send(inbound, [f"support@{HOST}"], gtube(f"support@{HOST}"))[1][0] == 250
    mail = InboundMail.objects.get()
    assert mail.spam == {"checked": False, "reason": "no spam checker configured"}
    assert b"X-Spam-Score" not in bytes(mail.raw)
    assert run_posts() == 1
    post = json.loads(receiver.requests[0].body)
    assert (post["SpamStatus"], post["SpamScore"], post["SpamThreshold"], post["SpamRules"]) == (
        "not checked",
        None,
        None,
        None,
    )


def test_a_spamd_that_is_down_or_never_answers_costs_a_bounded_wait_and_no_mail(api, inbound, inbound_domain, settings):
    add_route(api, f"support@{HOST}", "store")
    with socket.socket() as closed:
        closed.bind(("127.0.0.38", 0))
        host, port = closed.getsockname()
        down = f"{host}:{port}"
    settings.POSTWERK_SPAMD_ADDRESS = down  # nothing listens there any more: connection refused
    assert smtp_send(inbound, [f"support@{HOST}"], message(f"support@{HOST}"))[1][0] == 250
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.38", 0))
        silent.listen(8)
        host, port = silent.getsockname()
        settings.POSTWERK_SPAMD_ADDRESS, settings.POSTWERK_SPAMD_TIMEOUT = f"{host}:{port}", 1.0
        assert smtp_send(inbound, [f"support@{HOST}"], message(f"support@{HOST}"))[1][0] == 250
    first, second = InboundMail.objects.order_by("received_at")
    assert first.spam == {"checked": False, "reason": "the spam checker failed: AIOSpamcConnectionFailed"}
    assert second.spam == {"checked": False, "reason": "the spam checker did not answer within 1 s"}
    assert first.state == second.state == "stored"


def test_a_route_refuses_or_holds_spam_as_it_says_and_takes_ham(api, inbound, inbound_domain, settings, spamd_address):
    settings.POSTWERK_SPAMD_ADDRESS, settings.POSTWERK_SPAMD_TIMEOUT = spamd_address, 60.0
    add_route(api, f"strict@{HOST}", "store", spam="refuse")
    add_route(api, f"review@{HOST}", "store", spam="hold")
    assert add_route(api, f"open@{HOST}", "store")["spam"] == "accept"
    bad = api.post("/api/v1/inbound-routes", {"match": f"x@{HOST}", "action": "store", "spam": "drop"}, format="json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["spam"]
    _, (code, reply) = smtp_send(inbound, [f"strict@{HOST}"], gtube(f"strict@{HOST}"))
    assert (code, reply) == (550, b"5.7.1 Refused: this message is spam")
    assert not InboundMail.objects.exists()
    assert smtp_send(inbound, [f"strict@{HOST}"], message(f"strict@{HOST}"))[1][0] == 250  # ham passes
    for rcpt in ("review", "open"):
        assert smtp_send(inbound, [f"{rcpt}@{HOST}"], gtube(f"{rcpt}@{HOST}"))[1][0] == 250
    # Spam for a refusing and a holding route at once: held (a 550 would refuse it for both).
    rcpts = [f"strict@{HOST}", f"review@{HOST}"]
    assert smtp_send(inbound, rcpts, gtube(f"strict@{HOST}"))[1][0] == 250
    rows = sorted(InboundMail.objects.values_list("rcpt_to", "state", "note"))
    score = InboundMail.objects.get(rcpt_to=f"open@{HOST}").spam["score"]
    assert rows == [
        (f"open@{HOST}", "stored", ""),
        (f"review@{HOST}", "held", f"held: spam (score {score:.1f})"),
        (f"review@{HOST}", "held", f"held: spam (score {score:.1f})"),
        (f"strict@{HOST}", "held", f"held: spam (score {score:.1f})"),
        (f"strict@{HOST}", "stored", ""),
    ]
