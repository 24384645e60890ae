"""Tests for the loopback test servers themselves (no Django, no mocks).

Runs with ``pytest -p no:django tests/test_servers.py`` as well as under
pytest-django: nothing here touches the database.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from tests.servers import DnsServer, SmtpSink, make_self_signed

DKIM_KEY = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 10
MESSAGE = b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n\r\nline one\r\n.dot line\r\n"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def loaded_dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        server.add("example.test", "MX", "10 mx1.example.test.")
        server.add("example.test", "MX", "20 mx2.example.test")
        server.add("mx1.example.test", "A", "127.0.0.2")
        server.add("mx2.example.test", "A", "127.0.0.3")
        server.add("mx1.example.test", "AAAA", "::1")
        server.add("sel._domainkey.example.test", "TXT", DKIM_KEY)
        server.add("alias.example.test", "CNAME", "mx1.example.test")
        yield server


def make_resolver(server: DnsServer, lifetime: float = 2.0) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(server.host, server.port)]
    resolver.lifetime = lifetime
    resolver.timeout = lifetime
    return resolver


@pytest.fixture
def resolver(loaded_dns: DnsServer) -> dns.resolver.Resolver:
    return make_resolver(loaded_dns)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink("127.0.0.2") as server:
        yield server


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_self_signed(tmp_path_factory.mktemp("certs"), "mx.example.test")


def unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------- DNS


def test_mx_and_a_records(loaded_dns: DnsServer, resolver: dns.resolver.Resolver) -> None:
    answer = resolver.resolve("example.test", "MX")
    assert answer.response.flags & dns.flags.AA
    assert sorted((r.preference, r.exchange.to_text()) for r in answer) == [
        (10, "mx1.example.test."),
        (20, "mx2.example.test."),
    ]
    assert [r.address for r in resolver.resolve("mx1.example.test", "A")] == ["127.0.0.2"]
    assert [r.address for r in resolver.resolve("mx1.example.test", "AAAA")] == ["::1"]
    assert loaded_dns.address == ("127.0.0.1", loaded_dns.port)


def test_names_are_case_insensitive(loaded_dns: DnsServer, resolver: dns.resolver.Resolver) -> None:
    loaded_dns.add("MiXeD.Example.TEST.", "A", "127.0.0.9")
    assert [r.address for r in resolver.resolve("mixed.example.test", "A")] == ["127.0.0.9"]
    assert ("mixed.example.test", "A", "udp") in loaded_dns.queries


def test_dkim_txt_is_split_into_character_strings(resolver: dns.resolver.Resolver) -> None:
    rdata = resolver.resolve("sel._domainkey.example.test", "TXT")[0]
    assert len(DKIM_KEY) > 400
    assert all(len(chunk) <= 255 for chunk in rdata.strings)
    assert b"".join(rdata.strings).decode() == DKIM_KEY


def test_quoted_txt_presentation_value(loaded_dns: DnsServer, resolver: dns.resolver.Resolver) -> None:
    loaded_dns.add("_dmarc.example.test", "TXT", '"v=DMARC1; " "p=reject"')
    rdata = resolver.resolve("_dmarc.example.test", "TXT")[0]
    assert rdata.strings == (b"v=DMARC1; ", b"p=reject")


def test_oversized_udp_answer_truncates_and_resolver_retries_over_tcp(
    loaded_dns: DnsServer, resolver: dns.resolver.Resolver
) -> None:
    big = "x" * 1500
    loaded_dns.add("big.example.test", "TXT", big)
    rdata = resolver.resolve("big.example.test", "TXT")[0]
    assert b"".join(rdata.strings).decode() == big
    assert loaded_dns.queries[-2:] == [
        ("big.example.test", "TXT", "udp"),
        ("big.example.test", "TXT", "tcp"),
    ]

    # Raw UDP without EDNS: TC set, answer withheld.
    query = dns.message.make_query("big.example.test", "TXT")
    response = dns.query.udp(query, loaded_dns.host, port=loaded_dns.port, timeout=2)
    assert response.flags & dns.flags.TC

    # With a large enough EDNS payload the whole answer fits in one datagram.
    query = dns.message.make_query("big.example.test", "TXT", use_edns=0, payload=4096)
    response = dns.query.udp(query, loaded_dns.host, port=loaded_dns.port, timeout=2)
    assert not response.flags & dns.flags.TC
    assert len(response.answer) == 1


def test_nxdomain(resolver: dns.resolver.Resolver) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("nope.example.test", "MX")


def test_nodata_for_existing_name_and_empty_non_terminal(
    loaded_dns: DnsServer, resolver: dns.resolver.Resolver
) -> None:
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("mx1.example.test", "MX")
    # _domainkey.example.test has no records itself, only a child.
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("_domainkey.example.test", "TXT")
    # The negative answer carries an SOA so resolvers can cache it.
    query = dns.message.make_query("_domainkey.example.test", "TXT")
    response = dns.query.udp(query, loaded_dns.host, port=loaded_dns.port, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_cname_is_chased_in_zone(loaded_dns: DnsServer, resolver: dns.resolver.Resolver) -> None:
    answer = resolver.resolve("alias.example.test", "A")
    assert answer.canonical_name == dns.name.from_text("mx1.example.test")
    assert [r.address for r in answer] == ["127.0.0.2"]
    loaded_dns.add("dangling.example.test", "CNAME", "gone.example.test")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("dangling.example.test", "A")


def test_servfail(loaded_dns: DnsServer, resolver: dns.resolver.Resolver) -> None:
    loaded_dns.servfail("example.test")
    query = dns.message.make_query("example.test", "MX")
    response = dns.query.udp(query, loaded_dns.host, port=loaded_dns.port, timeout=2)
    assert response.rcode() == dns.rcode.SERVFAIL
    # dnspython gives up on a nameserver that SERVFAILs.
    with pytest.raises(dns.resolver.NoNameservers):
        resolver.resolve("example.test", "MX")
    loaded_dns.heal("example.test")
    assert len(resolver.resolve("example.test", "MX")) == 2


def test_drop_times_out(loaded_dns: DnsServer) -> None:
    loaded_dns.drop("mx1.example.test", "A")
    resolver = make_resolver(loaded_dns, lifetime=0.3)
    started = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        resolver.resolve("mx1.example.test", "A")
    assert time.monotonic() - started < 2
    assert ("mx1.example.test", "A", "udp") in loaded_dns.queries
    # Only the dropped type is affected.
    assert [r.address for r in resolver.resolve("mx1.example.test", "AAAA")] == ["::1"]


def test_tcp_several_queries_per_connection(loaded_dns: DnsServer) -> None:
    with socket.create_connection(loaded_dns.address, timeout=2) as sock:
        for name, rtype in (("example.test", "MX"), ("mx2.example.test", "A"), ("nope.example.test", "A")):
            query = dns.message.make_query(name, rtype)
            response = dns.query.tcp(query, loaded_dns.host, timeout=2, sock=sock)
            assert response.id == query.id
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert [q[2] for q in loaded_dns.queries] == ["tcp", "tcp", "tcp"]


def test_remove_and_clear(loaded_dns: DnsServer, resolver: dns.resolver.Resolver) -> None:
    loaded_dns.remove("mx1.example.test", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("mx1.example.test", "A")
    loaded_dns.remove("mx1.example.test")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("mx1.example.test", "AAAA")
    loaded_dns.clear()
    assert loaded_dns.queries == []
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("example.test", "MX")


def test_queries_log_shows_resolver_caching(loaded_dns: DnsServer, resolver: dns.resolver.Resolver) -> None:
    resolver.cache = dns.resolver.Cache()
    resolver.resolve("example.test", "MX")
    resolver.resolve("example.test", "MX")
    assert loaded_dns.queries.count(("example.test", "MX", "udp")) == 1


# --------------------------------------------------------------------------- SMTP


def test_delivery_is_recorded(sink: SmtpSink) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.sendmail("a@sender.test", ["b@rcpt.test", "c@rcpt.test"], MESSAGE)
    assert sink.wait_for(1)
    [got] = sink.messages
    assert got.mail_from == "a@sender.test"
    assert got.rcpt_tos == ["b@rcpt.test", "c@rcpt.test"]
    assert got.data == MESSAGE  # CRLF kept, dot-stuffing undone
    assert got.tls is False
    assert got.smtputf8 is False
    assert got.peer[0].startswith("127.")
    assert sink.connections == 1


def test_two_messages_in_one_connection_share_session(sink: SmtpSink) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        _code, reply = client.ehlo("client.test")
        client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
        client.sendmail("a@sender.test", ["c@rcpt.test"], MESSAGE)
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.sendmail("a@sender.test", ["d@rcpt.test"], MESSAGE)
    assert sink.wait_for(3)
    first, second, third = sink.messages
    assert first.session_id == second.session_id != third.session_id
    assert sink.connections == 2
    assert b"SMTPUTF8" in reply


def test_smtputf8_flag(sink: SmtpSink) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.sendmail("jörg@sender.test", ["b@rcpt.test"], MESSAGE, mail_options=["SMTPUTF8"])
    assert sink.wait_for(1)
    assert sink.messages[0].smtputf8 is True
    assert sink.messages[0].mail_from == "jörg@sender.test"


def test_rcpt_replies_reject_selected_recipients(sink: SmtpSink) -> None:
    sink.rcpt_replies["nobody@rcpt.test"] = "550 5.1.1 <nobody@rcpt.test> No such user"
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        refused = client.sendmail("a@sender.test", ["b@rcpt.test", "Nobody@rcpt.test"], MESSAGE)
        assert refused == {"Nobody@rcpt.test": (550, b"5.1.1 <nobody@rcpt.test> No such user")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@sender.test", ["nobody@rcpt.test"], MESSAGE)
    assert sink.wait_for(1)
    assert [m.rcpt_tos for m in sink.messages] == [["b@rcpt.test"]]


def test_mail_and_data_replies(sink: SmtpSink) -> None:
    sink.mail_reply = "421 4.7.0 Too busy"
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
    assert info.value.smtp_code == 421
    sink.mail_reply = None
    sink.data_reply = "554 5.7.1 Spam"
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPDataError) as data_info:
            client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
    assert data_info.value.smtp_code == 554
    assert sink.messages == []


def test_tempfail_next(sink: SmtpSink) -> None:
    sink.tempfail_next = 1
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
        assert info.value.smtp_code == 451
        client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
    assert sink.wait_for(1)
    assert len(sink.messages) == 1
    assert sink.tempfail_next == 0


def test_starttls_with_self_signed_cert(cert: tuple[str, str]) -> None:
    with SmtpSink("127.0.0.2", tls_cert=cert) as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            client.ehlo("client.test")
            assert client.has_extn("starttls")
            client.starttls(context=unverified_context())
            client.ehlo("client.test")
            client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
            client.sendmail("a@sender.test", ["c@rcpt.test"], MESSAGE)
        assert sink.wait_for(2)
        assert [m.tls for m in sink.messages] == [True, True]
        # aiosmtpd swaps its Session on STARTTLS; the id must not change.
        assert sink.messages[0].session_id == sink.messages[1].session_id
        assert sink.connections == 1


def test_no_starttls_without_cert(sink: SmtpSink) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.ehlo("client.test")
        assert not client.has_extn("starttls")


def test_hang_on_mail_times_out_client_then_recovers(sink: SmtpSink) -> None:
    sink.hang_on = "MAIL"
    with smtplib.SMTP(sink.host, sink.port, timeout=0.5) as client:
        client.ehlo("client.test")
        # smtplib turns the socket timeout into SMTPServerDisconnected.
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            client.mail("a@sender.test")
    # hang_sessions defaults to 1, so the next session behaves normally.
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
    assert sink.wait_for(1)
    assert len(sink.messages) == 1
    assert sink.messages[0].session_id == 2


def test_release_hang_answers_tempfail(sink: SmtpSink) -> None:
    sink.hang_on = "DATA"
    outcome: dict[str, object] = {}

    def deliver() -> None:
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            try:
                client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
            except smtplib.SMTPDataError as exc:
                outcome["code"] = exc.smtp_code

    thread = threading.Thread(target=deliver)
    thread.start()
    deadline = time.monotonic() + 5
    while sink.hang_sessions and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.hang_sessions == 0  # the session is now hanging
    sink.release_hang()
    thread.join(5)
    assert outcome == {"code": 451}
    assert sink.messages == []


def test_stop_is_prompt_with_hung_and_idle_clients() -> None:
    sink = SmtpSink("127.0.0.2").start()
    sink.hang_on = "RCPT"
    sink.hang_sessions = 5
    hung = smtplib.SMTP(sink.host, sink.port, timeout=5)
    hung.ehlo("client.test")
    hung.mail("a@sender.test")
    hung.putcmd("rcpt", "TO:<b@rcpt.test>")  # no reply will come
    idle = smtplib.SMTP(sink.host, sink.port, timeout=5)
    idle.ehlo("client.test")
    time.sleep(0.1)
    started = time.monotonic()
    sink.stop()
    assert time.monotonic() - started < 2
    for client in (hung, idle):
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            client.noop()
        client.close()


def test_two_sinks_share_one_port_on_different_addresses() -> None:
    with SmtpSink("127.0.0.2") as first, SmtpSink("127.0.0.3", port=first.port) as second:
        assert first.port == second.port
        for sink, rcpt in ((first, "one@rcpt.test"), (second, "two@rcpt.test")):
            with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
                client.sendmail("a@sender.test", [rcpt], MESSAGE)
        assert first.wait_for(1) and second.wait_for(1)
        assert [m.rcpt_tos for m in first.messages] == [["one@rcpt.test"]]
        assert [m.rcpt_tos for m in second.messages] == [["two@rcpt.test"]]


def test_restart_keeps_port(sink: SmtpSink) -> None:
    port = sink.port
    sink.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(sink.address, timeout=1).close()
    sink.start()
    assert sink.port == port
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        client.sendmail("a@sender.test", ["b@rcpt.test"], MESSAGE)
    assert sink.wait_for(1)


def test_make_self_signed_cert_loads(cert: tuple[str, str], tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    certfile, keyfile = make_self_signed(tmp_path)
    assert Path(certfile).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert Path(keyfile).stat().st_mode & 0o077 == 0
