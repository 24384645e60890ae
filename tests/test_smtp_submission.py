"""SMTP submission: real clients (smtplib, swaks) against a real listener on loopback, every rule's reply."""

from __future__ import annotations

import base64
import email
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
from email import policy

import dkim
import pytest

from accounts.services import smtp_credential_create, smtp_credential_revoke
from sending.models import Message, Recipient, RecipientState
from sending.smtp import auth_limits
from sending.smtp.server import Listener, SmtpServer
from tests.conftest import add_mx_domain, deliver_queued, publish_dkim, verified_domain
from tests.servers import make_self_signed
from tests.test_delivery import dns_txt
from tests.test_tracking import LONG_NOTE, LONG_TOKEN, LONG_URL, assert_plain_wire_headers, wire_field

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def smtp_server(settings, tmp_path, domain):
    cert, key = make_self_signed(tmp_path, "smtp.postwerk.example")
    settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY = cert, key
    settings.POSTWERK_MAX_MESSAGE_SIZE = 200_000
    settings.POSTWERK_SMTP_AUTH_MAX_FAILURES = 4
    auth_limits.reset("127.0.0.1", None)
    server = SmtpServer(
        [Listener("submission", "127.0.0.1", 0, False), Listener("submissions", "127.0.0.1", 0, True)]
    ).start()
    yield server
    server.stop()
    auth_limits.reset("127.0.0.1", None)


@pytest.fixture
def credential(organization, domain):
    credential, password = smtp_credential_create(organization=organization, name="app")
    return credential.username, password


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(server, *, tls=True) -> smtplib.SMTP:
    host, port = server.bound["submission"]
    client = smtplib.SMTP(host, port, timeout=10)
    client.ehlo("client.example")
    if tls:
        client.starttls(context=_unverified())
        client.ehlo("client.example")
    return client


def logged_in(server, credential) -> smtplib.SMTP:
    client = connect(server)
    client.login(*credential)
    return client


MESSAGE = (
    "From: App <app@acme.example>\r\nTo: jane@dest.example\r\nBcc: secret@dest.example\r\n"
    "Subject: Hi\r\n\r\nHello Jane\r\n"
)


def test_ehlo_advertises_auth_only_after_tls(smtp_server):
    client = connect(smtp_server, tls=False)
    features = client.esmtp_features
    for name in ("starttls", "size", "8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"):
        assert name in features, features
    assert features["size"] == "200000"
    assert "auth" not in features
    client.starttls(context=_unverified())
    client.ehlo()
    assert set(client.esmtp_features["auth"].split()) >= {"PLAIN", "LOGIN"}
    assert "starttls" not in client.esmtp_features
    client.quit()


def test_auth_before_tls_is_538(smtp_server, credential):
    client = connect(smtp_server, tls=False)
    code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0a\0b").decode())
    assert (code, text[:6]) == (538, b"5.7.11")


def test_mail_before_auth_is_530_and_nothing_relays(smtp_server):
    client = connect(smtp_server)
    code, text = client.mail("anyone@outside.example")
    assert (code, text[:5]) == (530, b"5.7.0")
    assert client.rcpt("victim@elsewhere.example") == (530, b"5.7.0 Authentication required")
    plain = connect(smtp_server, tls=False)
    assert plain.mail("anyone@outside.example")[0] == 530


def test_bad_credentials_are_535_then_locked_out_with_454(smtp_server, credential):
    username = credential[0]
    codes = []
    for _ in range(5):
        client = connect(smtp_server)
        try:
            client.login(username, "wrong")
        except smtplib.SMTPAuthenticationError as exc:
            codes.append((exc.smtp_code, exc.smtp_error[:5]))
        client.close()
    assert codes[0] == (535, b"5.7.8")
    assert codes[-1] == (454, b"4.7.0")
    client = connect(smtp_server)
    with pytest.raises(smtplib.SMTPAuthenticationError) as locked:
        client.login(*credential)  # even the right password waits until the window passes
    assert locked.value.smtp_code == 454


def test_revoked_credential_is_refused(smtp_server, organization):
    credential, password = smtp_credential_create(organization=organization, name="old")
    smtp_credential_revoke(credential=credential)
    client = connect(smtp_server)
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(credential.username, password)
    assert refused.value.smtp_code == 535


def test_source_ip_allow_list(smtp_server, organization):
    credential, password = smtp_credential_create(organization=organization, name="office", networks=["10.0.0.0/8"])
    client = connect(smtp_server)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(credential.username, password)
    credential2, password2 = smtp_credential_create(organization=organization, name="local", networks=["127.0.0.0/8"])
    logged_in(smtp_server, (credential2.username, password2)).quit()


def test_accepted_message_is_stored_with_bcc_stripped_and_ids_added(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    code, text = client.mail("app@acme.example")
    assert code == 250
    client.rcpt("jane@dest.example")
    client.rcpt("secret@dest.example")
    code, text = client.data(MESSAGE.encode())
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    message_id = text.decode().rsplit(" ", 1)[1]
    message = Message.objects.get(pk=message_id)
    assert message.smtp_credential is not None
    raw = bytes(message.raw)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None and b"secret@" not in raw
    assert parsed["Message-ID"] == message.message_id and parsed["Date"]
    assert sorted(Recipient.objects.filter(message=message).values_list("address", flat=True)) == [
        "jane@dest.example",
        "secret@dest.example",
    ]
    client.quit()


def test_implicit_tls_with_auth_login(smtp_server, credential):
    host, port = smtp_server.bound["submissions"]
    client = smtplib.SMTP_SSL(host, port, timeout=10, context=_unverified())
    client.ehlo()
    assert "starttls" not in client.esmtp_features
    client.user, client.password = credential
    code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
    assert code == 235
    client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE.encode())
    assert Message.objects.count() == 1
    client.quit()


def test_sender_domains_are_checked_at_mail_and_after_data(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    code, text = client.mail("ceo@bank.example")
    assert (code, text[:5]) == (550, b"5.7.1")
    client.rset()
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    code, text = client.data(MESSAGE.replace("app@acme.example", "ceo@bank.example").encode())
    assert (code, text[:5]) == (550, b"5.7.1")
    assert not Message.objects.exists()


def test_credential_limited_to_some_domains(smtp_server, organization, domain, zone):
    other = verified_domain(zone, organization, "other.example")
    credential, password = smtp_credential_create(organization=organization, name="limited", domains=[other])
    client = logged_in(smtp_server, (credential.username, password))
    assert client.mail("app@acme.example")[0] == 550
    client.rset()
    assert client.mail("app@other.example")[0] == 250


def test_too_many_recipients_is_452(smtp_server, credential, settings):
    client = logged_in(smtp_server, credential)
    client.mail("app@acme.example")
    codes = [client.rcpt(f"u{i}@dest.example") for i in range(settings.POSTWERK_MAX_RECIPIENTS + 1)]
    assert all(code == 250 for code, _ in codes[:-1])
    assert (codes[-1][0], codes[-1][1][:5]) == (452, b"4.5.3")


def test_size_declared_and_actual_over_the_limit_are_552(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    code, text = client.mail("app@acme.example", ["SIZE=999999999"])
    assert (code, text[:5]) == (552, b"5.3.4")
    client.rset()
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    big = MESSAGE + ("x" * 990 + "\r\n") * 250
    code, text = client.data(big.encode())
    assert (code, text[:5]) == (552, b"5.3.4")
    assert not Message.objects.exists()
    assert client.noop()[0] == 250  # the session goes on


def test_malformed_commands_and_addresses(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    assert client.docmd("MAIL", "FROM:<not an address>") == (553, b"5.1.7 Bad sender address syntax")
    code, text = client.docmd("MAIL", "FROM:<app@acme.example>")
    assert code == 250
    assert client.docmd("RCPT", "TO:<bad@@dest>") == (553, b"5.1.3 Error: malformed address")
    code, text = client.docmd("FROBNICATE")
    assert (code, text[:5]) == (500, b"5.5.1")
    code, text = client.docmd("NOOP " + "x" * 2000)
    assert (code, text[:5]) == (500, b"5.5.6")
    assert client.noop()[0] == 250


def test_pipelined_transaction(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    sock = client.sock
    sock.sendall(b"MAIL FROM:<app@acme.example>\r\nRCPT TO:<a@dest.example>\r\nRCPT TO:<b@dest.example>\r\nDATA\r\n")
    replies = b""
    while replies.count(b"\r\n") < 4:
        replies += sock.recv(4096)
    assert [line[:3] for line in replies.split(b"\r\n")[:4]] == [b"250", b"250", b"250", b"354"]
    sock.sendall(MESSAGE.encode() + b".\r\nQUIT\r\n")
    tail = b""
    while b"221" not in tail:
        chunk = sock.recv(4096)
        if not chunk:
            break
        tail += chunk
    assert tail.startswith(b"250 2.0.0 Ok: queued as")
    assert Recipient.objects.count() == 2


def test_client_that_disconnects_mid_data_queues_nothing(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    client.putcmd("DATA")
    assert client.getreply()[0] == 354
    client.send(b"From: app@acme.example\r\nSubject: half\r\n\r\npartial body")
    client.sock.close()
    # The server keeps serving others.
    other = logged_in(smtp_server, credential)
    other.sendmail("app@acme.example", ["x@dest.example"], MESSAGE.encode())
    assert Message.objects.count() == 1
    assert Recipient.objects.get().address == "x@dest.example"


def test_random_bytes_get_replies_and_the_server_survives(smtp_server, credential):
    import random

    host, port = smtp_server.bound["submission"]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.recv(1024)
        # Seeded, so the bytes and therefore the reply are the same on every run.
        sock.sendall(random.Random(28).randbytes(4096) + b"\r\n")
        assert sock.recv(4096).startswith(b"500 5.5.2 Error: bad syntax\r\n")
    logged_in(smtp_server, credential).quit()


def test_8bit_and_smtputf8_messages_arrive_intact_and_dkim_valid(smtp_server, credential, zone, mx, domain):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    publish_dkim(zone, domain)
    body8 = "From: app@acme.example\r\nTo: jane@dest.example\r\nSubject: Greetings\r\nContent-Type: text/plain; "
    body8 += "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSchöne Grüße aus Köln\r\n"
    client = logged_in(smtp_server, credential)
    client.sendmail("app@acme.example", ["jane@dest.example"], body8.encode(), mail_options=["BODY=8BITMIME"])
    client.sendmail(
        "app@acme.example",
        ["jösé@dest.example"],
        body8.replace("jane@", "jösé@").encode(),
        mail_options=["SMTPUTF8", "BODY=8BITMIME"],
    )
    client.quit()
    assert deliver_queued() == 2
    assert sink.wait_for(2)
    for received in sink.messages:
        assert "Schöne Grüße aus Köln".encode() in received.data
        assert dkim.verify(received.data, dnsfunc=dns_txt(zone))
    assert {m.smtputf8 for m in sink.messages} == {False, True}


def test_smtp_and_api_deliveries_are_equivalent(smtp_server, credential, zone, mx, domain, api):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    publish_dkim(zone, domain)
    client = logged_in(smtp_server, credential)
    client.sendmail(
        "app@acme.example",
        ["jane@dest.example"],
        b"From: app@acme.example\r\nTo: jane@dest.example\r\nSubject: Same\r\n\r\nSame body\r\n",
    )
    client.quit()
    response = api.post(
        "/api/v1/messages",
        {"from": "app@acme.example", "to": ["jane@dest.example"], "subject": "Same", "text": "Same body"},
        format="json",
    )
    assert response.status_code == 202
    deliver_queued()
    assert sink.wait_for(2)
    # Both use the platform's bounce address as envelope sender; the original stays on the message.
    assert all(m.mail_from.startswith("b-") for m in sink.messages)
    assert set(Message.objects.values_list("mail_from", flat=True)) == {"app@acme.example"}
    assert [m.rcpt_tos for m in sink.messages] == [["jane@dest.example"]] * 2
    parsed = [email.message_from_bytes(m.data, policy=policy.default) for m in sink.messages]
    assert {p["Subject"] for p in parsed} == {"Same"}
    assert all(p["DKIM-Signature"] and "Same body" in p.get_body(("plain",)).get_content() for p in parsed)
    assert all(dkim.verify(m.data, dnsfunc=dns_txt(zone)) for m in sink.messages)
    assert set(Recipient.objects.values_list("state", flat=True)) == {RecipientState.DELIVERED}


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is installed by .ci/run")
def test_swaks_submits_over_starttls(smtp_server, credential):
    host, port = smtp_server.bound["submission"]
    result = subprocess.run(
        [
            "swaks",
            "--server",
            host,
            "--port",
            str(port),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            credential[0],
            "--auth-password",
            credential[1],
            "--from",
            "app@acme.example",
            "--to",
            "jane@dest.example",
            "--header",
            "From: app@acme.example",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "250 2.0.0 Ok: queued as" in result.stdout, result.stdout + result.stderr
    assert Message.objects.count() == 1


def test_database_failure_answers_451_never_250(smtp_server, credential):
    from django.db import connection

    client = logged_in(smtp_server, credential)
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    # A real database error, not a mock: the table the message must go into is gone for a moment.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE sending_recipient RENAME TO sending_recipient_away")
    try:
        code, text = client.data(MESSAGE.encode())
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE sending_recipient_away RENAME TO sending_recipient")
    assert (code, text[:5]) == (451, b"4.3.0")
    assert not Message.objects.exists()
    client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE.encode())  # and it recovers
    assert Message.objects.count() == 1


def _read_replies(sock: socket.socket, count: int, timeout: float = 10) -> list[bytes]:
    """Read until `count` complete final reply lines (code followed by a space) have arrived."""
    sock.settimeout(timeout)
    buffer = b""
    while True:
        lines = [line for line in buffer.split(b"\r\n") if line[3:4] == b" "]
        if len(lines) >= count:
            return lines
        chunk = sock.recv(65536)
        if not chunk:
            return lines
        buffer += chunk


def test_a_ten_megabyte_line_is_500_and_the_server_keeps_serving(smtp_server, credential):
    host, port = smtp_server.bound["submission"]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.recv(1024)
        try:
            sock.sendall(b"X" * (10 * 1024 * 1024) + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and hang up before it has read everything; both are fine
        replies = _read_replies(sock, 1)
        assert replies and replies[0][:9] == b"500 5.5.6"
    logged_in(smtp_server, credential).quit()


def test_a_ten_megabyte_line_inside_data_is_refused_and_nothing_is_queued(smtp_server, credential):
    client = logged_in(smtp_server, credential)
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    code, text = client.data(MESSAGE.encode() + b"Y" * (10 * 1024 * 1024) + b"\r\n")
    assert (code, text) == (500, b"5.5.6 Line too long (RFC 5321 4.5.3.1.6)")
    assert not Message.objects.exists()
    logged_in(smtp_server, credential).quit()


def test_a_data_that_never_ends_times_out_and_queues_nothing(smtp_server, credential, settings):
    settings.POSTWERK_SMTP_IDLE_TIMEOUT = 1.0
    client = logged_in(smtp_server, credential)
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    client.putcmd("DATA")
    assert client.getreply()[0] == 354
    client.send(b"From: app@acme.example\r\nSubject: endless\r\n\r\nthe client stops here")
    client.sock.settimeout(10)
    answer = client.sock.recv(1024)  # the idle timeout, then the server hangs up
    assert answer.startswith(b"421 4.4.2")
    assert client.sock.recv(1024) == b""
    assert not Message.objects.exists()
    logged_in(smtp_server, credential).quit()


def test_a_data_stream_past_the_size_limit_is_552(smtp_server, credential, settings):
    client = logged_in(smtp_server, credential)
    client.mail("app@acme.example")
    client.rcpt("jane@dest.example")
    client.putcmd("DATA")
    assert client.getreply()[0] == 354
    line = b"z" * 998 + b"\r\n"
    try:
        for _ in range(settings.POSTWERK_MAX_MESSAGE_SIZE // len(line) + 50):
            client.send(line)
        client.send(b".\r\n")
    except smtplib.SMTPServerDisconnected:
        pass
    code, text = client.getreply()
    assert (code, text[:5]) == (552, b"5.3.4")
    assert not Message.objects.exists()


def test_a_thousand_pipelined_recipients_each_get_a_reply(smtp_server, credential, settings):
    limit = settings.POSTWERK_MAX_RECIPIENTS
    client = logged_in(smtp_server, credential)
    sock = client.sock
    commands = b"MAIL FROM:<app@acme.example>\r\n"
    commands += b"".join(b"RCPT TO:<u%d@dest.example>\r\n" % i for i in range(1000))
    sock.sendall(commands)
    replies = _read_replies(sock, 1001)
    assert len(replies) == 1001
    assert replies[0][:3] == b"250"
    assert all(reply[:3] == b"250" for reply in replies[1 : limit + 1])
    assert all(reply[:9] == b"452 4.5.3" for reply in replies[limit + 1 :])
    sock.sendall(b"DATA\r\n")
    assert _read_replies(sock, 1)[0][:3] == b"354"
    sock.sendall(MESSAGE.encode() + b".\r\n")
    assert _read_replies(sock, 1)[0].startswith(b"250 2.0.0 Ok: queued as")
    assert Recipient.objects.count() == limit


def test_connections_per_ip_are_capped_with_421(smtp_server, credential, settings):
    settings.POSTWERK_SMTP_MAX_CONNECTIONS_PER_IP = 3
    host, port = smtp_server.bound["submission"]
    held = [socket.create_connection((host, port), timeout=5) for _ in range(3)]
    try:
        for sock in held:
            assert sock.recv(1024).startswith(b"220")
        with socket.create_connection((host, port), timeout=5) as extra:
            assert extra.recv(1024).startswith(b"421 4.7.0")
            assert extra.recv(1024) == b""
    finally:
        for sock in held:
            sock.close()
    # The slots free up once those clients have gone.
    for _ in range(50):
        try:
            logged_in(smtp_server, credential).quit()
            break
        except smtplib.SMTPException:
            import time

            time.sleep(0.05)
    else:
        pytest.fail("the server did not free the per-IP slots")


def test_trusted_network_submits_without_auth_as_its_credential(settings, tmp_path, organization, domain):
    credential, _ = smtp_credential_create(organization=organization, name="smarthost")
    settings.POSTWERK_SMTP_TRUSTED_NETWORKS = [f"127.0.0.0/8={credential.username}"]
    cert, key = make_self_signed(tmp_path, "smtp.postwerk.example")
    settings.POSTWERK_SMTP_TLS_CERT, settings.POSTWERK_SMTP_TLS_KEY = cert, key
    server = SmtpServer([Listener("submission", "127.0.0.1", 0, False)]).start()
    try:
        client = connect(server, tls=False)
        client.sendmail("app@acme.example", ["jane@dest.example"], MESSAGE.encode())
        message = Message.objects.get()
        assert message.smtp_credential_id == credential.pk
        code, text = client.mail("app@elsewhere.example")
        assert (code, text[:5]) == (550, b"5.7.1")  # the credential's domain rules still hold
        client.rset()
        if shutil.which("smtp-source"):
            host, port = server.bound["submission"]
            subprocess.run(
                [
                    "smtp-source",
                    "-s",
                    "2",
                    "-m",
                    "4",
                    "-l",
                    "500",
                    "-f",
                    "app@acme.example",
                    "-t",
                    "x@dest.example",
                    f"{host}:{port}",
                ],
                check=True,
                timeout=30,
            )
            assert Message.objects.count() == 5
        smtp_credential_revoke(credential=credential)
        other = connect(server, tls=False)
        code, text = other.mail("app@acme.example")
        assert (code, text[:5]) == (530, b"5.7.0")
    finally:
        server.stop()


@pytest.mark.parametrize("header", [b"Subject: a\x00b", b"Message-ID: <a\x00b@acme.example>"])
def test_a_nul_in_a_stored_header_is_refused_for_good(smtp_server, credential, header):
    client = logged_in(smtp_server, credential)
    raw = b"From: App <app@acme.example>\r\nTo: jane@dest.example\r\n" + header + b"\r\n\r\nHello\r\n"
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("app@acme.example", ["jane@dest.example"], raw)
    assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.6.0")
    assert not Message.objects.exists()


def test_submitted_mail_gets_received_and_plain_headers_and_keeps_its_own(
    smtp_server, credential, zone, mx, domain, api, settings
):
    settings.POSTWERK_TRACKING_HOST, settings.POSTWERK_TRACKING_SCHEME = "track.postwerk.example", "https"
    zone.add("track.acme.example", "CNAME", "track.postwerk.example.")
    tracking = {"opens": True, "clicks": True, "unsubscribe_tags": ["*"]}
    assert api.patch(f"/api/v1/domains/{domain.pk}/tracking", tracking, format="json").status_code == 200
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    publish_dkim(zone, domain)
    # The sender's own headers, folded its own way (one long unbreakable word, a fold after a short first line).
    own = f"X-Token: {LONG_TOKEN}\r\nX-Note: short first line\r\n\t{LONG_NOTE}\r\n"
    raw = (
        f"From: app@acme.example\r\nTo: jane@dest.example\r\nSubject: Order\r\n{own}MIME-Version: 1.0\r\n"
        'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
        f'<html><body>\r\n<a href="{LONG_URL}">order</a>\r\n</body></html>\r\n'
    )
    client = logged_in(smtp_server, credential)
    client.sendmail("app@acme.example", ["jane@dest.example"], raw.encode())
    client.quit()
    assert deliver_queued() == 1
    assert sink.wait_for(1)
    data = sink.messages[0].data
    message = Message.objects.get()

    assert_plain_wire_headers(data, zone, message, campaign="default")
    received = wire_field(data, "Received")
    assert re.fullmatch(
        rf"Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n by mta\.postwerk\.example with ESMTPSA"
        rf" id {message.pk};\r\n [A-Z][a-z]{{2}}, \d\d [A-Z][a-z]{{2}} \d{{4}} \d\d:\d\d:\d\d \+0000".encode(),
        received,
    ), received
    assert all(len(line) <= 78 for line in received.split(b"\r\n"))
    assert own.encode() in data  # re-serialised for tracking, the sender's headers are as they were sent
