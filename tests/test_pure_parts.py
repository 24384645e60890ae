"""The pure pieces, on their own: reply parsing, the retry schedule, signing, address parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dkim
import pytest

from mail.addresses import AddressError, parse_mailbox
from mail.dkim_keys import generate_rsa_keypair
from mail.dkim_sign import dkim_sign
from mail.smtp_client import Reply
from sending.delivery.retry import next_attempt, retry_delay
from sending.intake.composer import Draft, build_message


def test_reply_splits_enhanced_status():
    reply = Reply.parse(550, b"5.1.1 <x@y>: Recipient address rejected")
    assert (reply.code, reply.enhanced, reply.text) == (550, "5.1.1", "<x@y>: Recipient address rejected")
    assert reply.permanent and not reply.success
    assert Reply.parse(421, "Service not available").enhanced == ""


def test_retry_schedule_repeats_its_last_step_and_expires(settings):
    settings.POSTWERK_RETRY_SCHEDULE = [60, 600]
    settings.POSTWERK_MAX_DELIVERY_AGE = 3600
    assert retry_delay(1) == timedelta(seconds=60)
    assert retry_delay(5) == timedelta(seconds=600)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert next_attempt(attempts=1, now=created, created_at=created) == created + timedelta(seconds=60)
    assert next_attempt(attempts=3, now=created + timedelta(seconds=3500), created_at=created) is None


def test_signature_covers_headers_and_body():
    pair = generate_rsa_keypair()
    draft = Draft(
        sender=parse_mailbox("a@acme.example"), to=[parse_mailbox("b@dest.example")], subject="Hi", text="Body"
    )
    raw = build_message(draft, message_id="<1@x>", date=datetime(2026, 1, 1, tzinfo=UTC))
    signed = dkim_sign(raw, domain="acme.example", selector="s1", private_key_pem=pair.private_pem)

    def dnsfunc(name, timeout=5):
        assert name == b"s1._domainkey.acme.example."
        return f"v=DKIM1; k=rsa; p={pair.public_b64}".encode()

    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert not dkim.verify(signed.replace(b"Body", b"Evil"), dnsfunc=dnsfunc)
    assert not dkim.verify(signed.replace(b"Subject: Hi", b"Subject: Ho"), dnsfunc=dnsfunc)


@pytest.mark.parametrize("text", ["", "plain", "a@b@c", "Name <a@b.example", "x@[127.0.0.1]", "a\r\n@b.example"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(AddressError):
        parse_mailbox(text)


def test_display_names_and_idn_domains():
    box = parse_mailbox('"Doe, Jane" <Jane@Bücher.example>')
    assert (box.display_name, box.domain, box.envelope_address) == (
        "Doe, Jane",
        "xn--bcher-kva.example",
        "Jane@xn--bcher-kva.example",
    )
    assert not box.smtputf8
    assert parse_mailbox("jösé@dest.example").smtputf8


def test_return_path_maps_back_to_its_delivery_and_cannot_be_forged():
    import uuid

    from sending.return_path import recipient_id_from_return_path, return_path

    recipient_id = uuid.uuid4()
    address = return_path(recipient_id, "pm-bounces.acme.example")
    assert address.endswith("@pm-bounces.acme.example")
    assert recipient_id_from_return_path(address) == recipient_id
    assert recipient_id_from_return_path(address.upper()) == recipient_id
    local, domain = address.split("@")
    forged = local[:-1] + ("0" if local[-1] != "0" else "1") + "@" + domain
    assert recipient_id_from_return_path(forged) is None
    assert recipient_id_from_return_path(f"b-{uuid.uuid4().hex}{'0' * 12}@{domain}") is None
    assert recipient_id_from_return_path("someone@example.com") is None
