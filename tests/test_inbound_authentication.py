"""Authenticating inbound mail (issue #22): SPF, DKIM (every canonicalisation, RSA and Ed25519), DMARC with
policy and alignment, ARC, as one RFC 8601 header; keys and policies served by the loopback DNS server; signed by
dkimpy and by OpenDKIM behind a real Postfix, never only by Postwerk's own signer."""

from __future__ import annotations

import smtplib

import dkim
import pytest

from mail.dkim_keys import generate_ed25519_keypair, generate_rsa_keypair
from mail.dkim_sign import SigningKey
from sending.domains.message_authentication import authenticate
from tests.servers.opendkim_postfix import available, opendkim_postfix

SENDER = "sender.example"
RSA = generate_rsa_keypair()
ED = generate_ed25519_keypair()
RSA_KEY = SigningKey(SENDER, "r1", "rsa", RSA.private_pem)
ED_KEY = SigningKey(SENDER, "e1", "ed25519", ED.private_pem)
MESSAGE = (
    b"From: Jane Sender <jane@sender.example>\r\n"
    b"To: support@inbound.acme.example\r\n"
    b"Subject: Where is my order?\r\n"
    b"Date: Mon, 07 Dec 2026 20:00:00 +0000\r\n"
    b"Message-ID: <q1@sender.example>\r\n"
    b"\r\n"
    b"Hello,  it   has not arrived.\r\n"
)


@pytest.fixture
def sender_zone(zone):
    zone.add(f"r1._domainkey.{SENDER}", "TXT", f"v=DKIM1; k=rsa; p={RSA.public_b64}")
    zone.add(f"e1._domainkey.{SENDER}", "TXT", f"v=DKIM1; k=ed25519; p={ED.public_b64}")
    zone.add(SENDER, "TXT", "v=spf1 ip4:127.0.0.5 -all")
    zone.add(SENDER, "MX", f"10 mx.{SENDER}.")
    zone.add(f"_dmarc.{SENDER}", "TXT", "v=DMARC1; p=reject")
    return zone


def sign(raw: bytes, key: SigningKey, canon: tuple[bytes, bytes] = (b"relaxed", b"relaxed")) -> bytes:
    algorithm = b"rsa-sha256" if key.algorithm == "rsa" else b"ed25519-sha256"
    headers = [b"from", b"to", b"subject", b"date", b"message-id"]
    signature = dkim.sign(
        raw,
        key.selector.encode(),
        key.domain.encode(),
        key.private_key,
        canonicalize=canon,
        include_headers=headers,
        signature_algorithm=algorithm,
    )
    return signature + raw


CANONS = [(h, b) for h in (b"simple", b"relaxed") for b in (b"simple", b"relaxed")]


@pytest.mark.parametrize("canon", CANONS, ids=lambda c: b"/".join(c).decode())
@pytest.mark.parametrize("key", [RSA_KEY, ED_KEY], ids=["rsa", "ed25519"])
def test_dkimpy_signatures_pass_in_every_canonicalisation(sender_zone, key, canon):
    results = authenticate(sign(MESSAGE, key, canon), ip="127.0.0.5", helo=f"mx.{SENDER}", mail_from=f"jane@{SENDER}")

    assert [(s.domain, s.selector, s.result) for s in results.dkim] == [(SENDER, key.selector, "pass")]
    assert (results.spf, results.dmarc, results.dmarc_policy, results.dmarc_rejects) == (
        "pass",
        "pass",
        "reject",
        False,
    )


def test_a_changed_body_fails_dkim_and_a_foreign_ip_fails_spf_so_dmarc_fails_under_reject(sender_zone):
    signed = sign(MESSAGE, RSA_KEY).replace(b"has not arrived", b"has arrived, pay here")

    results = authenticate(signed, ip="127.0.0.6", helo="mx.elsewhere.example", mail_from=f"jane@{SENDER}")

    assert [(s.result, s.reason) for s in results.dkim] == [("fail", "body hash did not verify")]
    assert (results.spf, results.dmarc, results.dmarc_policy, results.dmarc_rejects) == ("fail", "fail", "reject", True)


def test_spf_alone_aligns_and_the_header_says_everything(sender_zone):
    results = authenticate(MESSAGE, ip="127.0.0.5", helo=f"mx.{SENDER}", mail_from=f"bounces@{SENDER}")

    assert (results.spf, results.dkim, results.dmarc) == ("pass", (), "pass")
    assert results.header("mx.postwerk.example") == (
        "mx.postwerk.example;\r\n\tspf=pass smtp.mailfrom=sender.example;\r\n\tdkim=none;\r\n\t"
        "dmarc=pass (p=reject) header.from=sender.example;\r\n\tarc=none"
    )


def test_a_signature_of_another_domain_passes_dkim_but_does_not_align(sender_zone, zone):
    other = SigningKey("mailer.example", "m1", "rsa", RSA.private_pem)
    zone.add("m1._domainkey.mailer.example", "TXT", f"v=DKIM1; k=rsa; p={RSA.public_b64}")

    results = authenticate(sign(MESSAGE, other), ip="127.0.0.9", helo="mx.mailer.example", mail_from="b@mailer.example")

    assert [(s.domain, s.result) for s in results.dkim] == [("mailer.example", "pass")]
    assert (results.dmarc, results.dmarc_rejects) == ("fail", True)
    assert "dkim=pass header.d=mailer.example header.s=m1 header.a=rsa-sha256" in results.header("mx")


def test_two_from_addresses_are_a_dmarc_permerror(sender_zone):
    raw = MESSAGE.replace(b"From: Jane Sender <jane@sender.example>", b"From: jane@sender.example, joe@other.example")

    assert authenticate(raw, ip="127.0.0.5", helo=f"mx.{SENDER}", mail_from=f"jane@{SENDER}").dmarc == "permerror"


def test_np_applies_to_a_from_subdomain_that_does_not_exist(sender_zone, zone):
    zone.remove(f"_dmarc.{SENDER}")
    zone.add(f"_dmarc.{SENDER}", "TXT", "v=DMARC1; p=none; np=reject")
    raw = MESSAGE.replace(b"jane@sender.example>", b"jane@ghost.sender.example>")

    results = authenticate(raw, ip="127.0.0.9", helo="mx.elsewhere.example", mail_from="x@elsewhere.example")

    assert (results.from_domain, results.dmarc, results.dmarc_policy) == (f"ghost.{SENDER}", "fail", "reject")


def test_arc_chain_sealed_by_a_forwarder_validates_and_a_broken_one_fails(sender_zone, zone):
    forwarder = SigningKey("lists.example", "a1", "rsa", RSA.private_pem)
    zone.add("a1._domainkey.lists.example", "TXT", f"v=DKIM1; k=rsa; p={RSA.public_b64}")
    arrived = (
        b"Authentication-Results: lists.example; dkim=pass header.d=sender.example; spf=pass "
        b"smtp.mailfrom=sender.example; dmarc=pass header.from=sender.example\r\n" + sign(MESSAGE, RSA_KEY)
    )
    seal = dkim.arc_sign(arrived, b"a1", b"lists.example", forwarder.private_key, b"lists.example")
    sealed = b"".join(seal) + arrived

    ok = authenticate(sealed, ip="127.0.0.9", helo="mx.lists.example", mail_from="bounce@lists.example")
    broken = authenticate(
        sealed.replace(b"Subject: Where", b"Subject: [list] Where"),
        ip="127.0.0.9",
        helo="mx.lists.example",
        mail_from="bounce@lists.example",
    )

    assert (ok.arc, broken.arc) == ("pass", "fail")


def test_mail_signed_by_opendkim_behind_postfix_passes(sender_zone, zone, mx):
    # Fails, never skips, where OpenDKIM or Postfix is missing: .ci/run installs both.
    assert available() == ""
    sink = mx("127.0.0.2")
    with opendkim_postfix(domain=SENDER, selector="od1", relay=(sink.host, sink.port)) as (port, key):
        zone.add(f"od1._domainkey.{SENDER}", "TXT", key)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(f"jane@{SENDER}", ["support@inbound.acme.example"], MESSAGE)
        assert sink.wait_for(1, timeout=60)
    raw = sink.messages[0].data

    results = authenticate(raw, ip="127.0.0.5", helo=f"mx.{SENDER}", mail_from=f"jane@{SENDER}")

    assert raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=sender.example;\r\n\ts=od1;")
    assert [(s.domain, s.selector, s.algorithm, s.result) for s in results.dkim] == [
        (SENDER, "od1", "rsa-sha256", "pass")
    ]
    assert (results.dmarc, results.dmarc_policy) == ("pass", "reject")
