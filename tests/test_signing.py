"""Our DKIM signer against dkimpy: byte-identical output to `dkim.sign` (which Postwerk used to call), and
signatures that dkimpy's verifier accepts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from unittest import mock

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail import dkim_sign as signing
from mail.addresses import parse_mailbox
from mail.dkim_keys import generate_ed25519_keypair, generate_rsa_keypair
from mail.dkim_sign import SIGNED_HEADERS, SigningKey, dkim_sign, dkim_sign_all
from sending.intake.composer import Draft, build_message

NOW = 1767225600  # 2026-01-01T00:00:00Z

# Module-level so hypothesis examples share them (and RSA generation runs once).
RSA = generate_rsa_keypair()
ED = generate_ed25519_keypair()
RSA_PKCS1_PEM = serialization.load_pem_private_key(RSA.private_pem, None).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
RSA_KEY = SigningKey("acme.example", "s1", "rsa", RSA.private_pem)
ED_KEY = SigningKey("acme.example", "s2", "ed25519", ED.private_pem)


def dkimpy_sign_all(raw: bytes, keys: list[SigningKey], now: int = NOW) -> bytes:
    """What mail.dkim_sign did before it had its own signer: dkim.sign per key, same include list."""
    present = signing._header_names(raw)
    include = [h for h in SIGNED_HEADERS if h in present or h in (b"from", b"subject")]
    out = b""
    with mock.patch("time.time", return_value=now + 0.75):  # dkimpy truncates, so a fraction must not matter
        for key in keys:
            out += dkim.sign(
                raw,
                key.selector.encode("ascii"),
                key.domain.encode("ascii"),
                key.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
                linesep=b"\r\n",
                signature_algorithm=signing.ALGORITHMS[key.algorithm],
            )
    return out + raw


def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
    records = {
        b"s1._domainkey.acme.example.": f"v=DKIM1; k=rsa; p={RSA.public_b64}",
        b"s2._domainkey.acme.example.": f"v=DKIM1; k=ed25519; p={ED.public_b64}",
    }
    return records[name].encode()


def _composed() -> bytes:
    draft = Draft(
        sender=parse_mailbox("News Desk <news@acme.example>"),
        to=[parse_mailbox("Bob <b@dest.example>"), parse_mailbox("c@dest.example")],
        cc=[parse_mailbox("Dörte <d@dest.example>")],
        reply_to=[parse_mailbox("help@acme.example")],
        subject="Your weekly digest — Grüße aus Köln " + "long subject words " * 6,
        text="Hello there,  this is the text part.\n\twith a tab   \n" * 30,
        html="<p>Hello <b>there</b></p>\n" * 30,
        headers={
            "List-Unsubscribe": "<https://acme.example/u/abc>, <mailto:u@acme.example>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "In-Reply-To": "<x@y>",
            "References": "<a@b> <x@y>",
        },
    )
    return build_message(draft, message_id="<1@acme.example>", date=datetime(2026, 1, 1, tzinfo=UTC))


H = b"From: A <a@acme.example>\r\nTo: b@dest.example\r\nSubject: Hi\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
MESSAGES = {
    "composed": _composed(),
    "plain": H + b"\r\nHello\r\n",
    "folded_headers": b"From: A\r\n <a@acme.example>\r\nSubject: a long\r\n\tfolded   subject \r\n  more\r\n"
    b"To: b@dest.example,\r\n c@dest.example\r\n\r\nbody\r\n",
    "tabs_and_trailing_spaces": b"From:\ta@acme.example  \r\nSubject:  Hi \t  there\t\r\nTo: \t b@dest.example\t\r\n"
    b"\r\n a  b\t\tc  \r\n\t\r\nend \t\r\n  \t\r\n",
    "repeated_headers": b"From: a@acme.example\r\nTo: one@dest.example\r\nSubject: one\r\nTo: two@dest.example\r\n"
    b"Subject: two\r\nSubject: three\r\nCc: x@y\r\nfrom: second@acme.example\r\nCC: z@y\r\n\r\nbody\r\n",
    "missing_optional_headers": b"From: a@acme.example\r\n\r\nbody\r\n",
    "empty_body": H + b"\r\n",
    "no_blank_line": H,
    "no_blank_line_no_crlf": H[:-2],
    "body_without_final_crlf": H + b"\r\nlast line with trailing space \t",
    "many_trailing_blank_lines": H + b"\r\ntext\r\n" + b"\r\n" * 60,
    "only_blank_body_lines": H + b"\r\n \r\n\t\r\n\r\n",
    "bare_cr_at_the_end": H + b"\r\nx\r\r\n\r\n",
    "bare_lf_line_endings": H.replace(b"\r\n", b"\n") + b"\nbody\n\n",
    "mixed_line_endings": H + b"\r\na\nb\r\n\n",
    "non_ascii": "From: Jörg <j@acme.example>\r\nSubject: Grüße 😀  aus   Köln\r\nTo: b@dest.example\r\n\r\n"
    "Ünïcödé body  \r\n😀\t😀\r\n".encode(),
    "long_lines": b"From: a@acme.example\r\nSubject: "
    + b"x" * 500
    + b"\r\nTo: "
    + b"y " * 300
    + b"\r\n\r\n"
    + b"z" * 5000
    + b"\r\n",
    "cc_reply_to_list_unsubscribe": H + b"Cc: c@dest.example\r\nReply-To: r@acme.example\r\n"
    b"List-Unsubscribe: <https://acme.example/u>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n"
    b"\r\nbody\r\n",
    "mbox_from_line": b"From someone Thu Jan  1 00:00:00 2026\r\n" + H + b"\r\nbody\r\n",
    "empty_value_and_odd_names": b"From: a@acme.example\r\nSubject:\r\nX-Odd.Name_1: v\r\n::x\r\n\r\nb\r\n",
}


@pytest.mark.parametrize("name", MESSAGES)
@pytest.mark.parametrize("keys", [[RSA_KEY], [ED_KEY], [RSA_KEY, ED_KEY]], ids=["rsa", "ed25519", "both"])
def test_signature_is_byte_identical_to_dkimpy(name, keys):
    raw = MESSAGES[name]
    assert dkim_sign_all(raw, keys, now=NOW) == dkimpy_sign_all(raw, keys)


def test_pkcs1_pem_and_long_names_fold_like_dkimpy():
    raw = MESSAGES["composed"]
    for key in (
        SigningKey("acme.example", "s1", "rsa", RSA_PKCS1_PEM),
        # Tokens longer than a line: dkimpy hard-breaks them, which adds a space the header hash must include.
        SigningKey("sub." + "d" * 70 + ".acme.example", "sel" * 30, "ed25519", ED.private_pem),
        SigningKey("a.example", "s", "ed25519", ED.private_pem),
    ):
        assert dkim_sign_all(raw, [key], now=NOW) == dkimpy_sign_all(raw, [key])


def test_timestamp_defaults_to_the_clock_like_dkimpy():
    raw = MESSAGES["plain"]
    with mock.patch("time.time", return_value=NOW + 0.75):
        ours = dkim_sign(raw, domain="acme.example", selector="s2", private_key_pem=ED.private_pem, algorithm="ed25519")
    assert ours == dkimpy_sign_all(raw, [ED_KEY])
    assert b" t=%d;" % NOW in ours


@pytest.mark.parametrize("name", MESSAGES)
def test_dkimpy_verifies_both_signatures(name):
    signed = dkim_sign_all(MESSAGES[name], [RSA_KEY, ED_KEY])
    for idx in (0, 1):
        assert dkim.DKIM(signed).verify(idx=idx, dnsfunc=dnsfunc)
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    tampered = signed.replace(b"acme.example>", b"evil.example>")
    if tampered != signed:
        assert not dkim.verify(tampered, dnsfunc=dnsfunc)


def test_bad_keys_are_refused():
    with pytest.raises(dkim.KeyFormatError):
        dkim_sign(MESSAGES["plain"], domain="a.example", selector="s", private_key_pem=b"nope")
    with pytest.raises(dkim.KeyFormatError):
        short = base64.b64encode(b"x" * 31)
        dkim_sign(MESSAGES["plain"], domain="a.example", selector="s", private_key_pem=short, algorithm="ed25519")


# --- property: random valid-ish messages ---------------------------------------------------------------------

_NAMES = st.sampled_from(
    [n.decode() for n in set(SIGNED_HEADERS)] + ["X-Mailer", "Received", "Content-ID", "x-a", "Sender"]
).map(lambda n: "".join(c.upper() if i % 2 else c for i, c in enumerate(n)))
_WSP = st.sampled_from([" ", "\t", "  ", " \t ", ""])
_WORD = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters=":"), min_size=0, max_size=12
)
_VALUE = st.lists(st.tuples(_WSP, _WORD, st.sampled_from(["", "", "\r\n ", "\r\n\t"])), max_size=6).map(
    lambda parts: "".join(w + t + f for w, t, f in parts)
)
_HEADER = st.tuples(_NAMES, _WSP, _VALUE, _WSP).map(lambda h: f"{h[0]}:{h[1]}{h[2]}{h[3]}".encode())
_LINE = st.lists(st.one_of(_WORD, _WSP), max_size=8).map(lambda parts: "".join(parts).encode())
_BODY = st.tuples(
    st.lists(_LINE, max_size=12), st.integers(0, 5), st.booleans(), st.sampled_from([b"\r\n", b"\n"])
).map(lambda b: b[3].join(b[0]) + b"\r\n" * b[1] + (b"\r\n" if b[2] else b""))


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(_HEADER, min_size=1, max_size=12))
    headers.insert(draw(st.integers(0, len(headers))), b"From: a@acme.example")
    head = b"\r\n".join(headers)
    if draw(st.booleans()):
        return head + b"\r\n\r\n" + draw(_BODY)
    return head + draw(st.sampled_from([b"", b"\r\n"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_messages(), now=st.integers(0, 2**33))
def test_property_ed25519_identical_to_dkimpy(raw, now):
    assert dkim_sign_all(raw, [ED_KEY], now=now) == dkimpy_sign_all(raw, [ED_KEY], now=now)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_messages())
def test_property_rsa_identical_to_dkimpy(raw):
    assert dkim_sign_all(raw, [RSA_KEY], now=NOW) == dkimpy_sign_all(raw, [RSA_KEY])
