"""DANE (RFC 7672) with real parts: a zone signed by the loopback DNS server (dnspython's dnssec module) and
trusted through POSTWERK_DNSSEC_TRUST_ANCHORS, TLSA records for the MX, recipient MX hosts presenting matching and
non-matching certificates, and bogus (tampered) answers that defer rather than downgrade."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mail.tls_policy import dnssec
from sending.models import Event, Recipient, RecipientState
from tests.conftest import add_mx_domain, deliver_queued
from tests.security.pki import make_ca, make_leaf
from tests.servers.http_receiver import HttpReceiver

DOMAIN = "dane.example"
MX = f"mx1.{DOMAIN}"
TLSA_NAME = f"_25._tcp.{MX}"


@pytest.fixture
def signed(zone, settings):
    settings.POSTWERK_DNSSEC_TRUST_ANCHORS = [zone.sign_zone(DOMAIN)]
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    return zone


@pytest.fixture
def pki(tmp_path):
    """A CA that nothing trusts through PKIX (DANE does not need it), issuing the MX's certificate; the
    certificate file carries the CA too, so DANE-TA can find its anchor in the chain."""
    ca, ca_key, _ = make_ca(tmp_path)
    cert_path, key_path = make_leaf(tmp_path, ca, ca_key, MX)
    leaf = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    with open(cert_path, "ab") as handle:
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    return {"files": (cert_path, key_path), "leaf": leaf, "ca": ca}


def spki_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def cert_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def send(api, to: str = f"jane@{DOMAIN}") -> None:
    body = {"from": "hello@acme.example", "to": [to], "subject": "Hi", "text": "Hello\n"}
    assert api.post("/api/v1/messages", body, format="json").status_code == 202


def attempt() -> Event:
    return Event.objects.exclude(type__in=["queued", "sent"]).filter(recipient__isnull=False).latest("id")


def deferred_as_dnssec_invalid(api, sink) -> Recipient:
    """Send one message and deliver it: nothing reaches the MX, the recipient is deferred, the attempt says
    dnssec-invalid (never a plain-text or unauthenticated delivery)."""
    send(api)
    deliver_queued()
    assert sink.messages == []
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DEFERRED
    assert attempt().details["tls_policy"]["failure"] == "dnssec-invalid"
    return recipient


def test_signed_tlsa_answer_validates_against_the_configured_anchor(signed, pki):
    signed.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(pki['leaf'])}")
    answer = dnssec.lookup(TLSA_NAME, "TLSA")
    assert (answer.security, len(answer.rrset)) == (dnssec.Security.SECURE, 1)
    missing = dnssec.lookup(f"_25._tcp.mx9.{DOMAIN}", "TLSA")
    assert (missing.security, missing.rrset) == (dnssec.Security.SECURE, None)  # NSEC proves it absent


def test_dane_ee_match_delivers_and_records_dane(api, domain, mx, signed, pki):
    sink = mx("127.0.0.2", tls_cert=pki["files"])
    signed.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(pki['leaf'])}")
    send(api)
    deliver_queued()
    assert [m.tls for m in sink.messages] == [True]
    assert attempt().details["tls_policy"] == {"policy": "dane", "result": "success"}


def test_dane_ta_match_delivers(api, domain, mx, signed, pki):
    sink = mx("127.0.0.2", tls_cert=pki["files"])
    signed.add(TLSA_NAME, "TLSA", f"2 0 1 {cert_sha256(pki['ca'])}")
    send(api)
    deliver_queued()
    assert len(sink.messages) == 1
    assert attempt().details["tls_policy"]["result"] == "success"


def test_certificate_not_matching_tlsa_defers(api, domain, mx, signed, pki):
    sink = mx("127.0.0.2", tls_cert=pki["files"])
    signed.add(TLSA_NAME, "TLSA", f"3 1 1 {'00' * 32}")
    send(api)
    deliver_queued()
    assert sink.messages == []
    recipient = Recipient.objects.get()
    assert (recipient.state, recipient.last_enhanced) == (RecipientState.DEFERRED, "4.7.5")
    policy = attempt().details["tls_policy"]
    assert (policy["policy"], policy["failure"]) == ("dane", "validation-failure")


def test_dane_mx_without_starttls_defers(api, domain, mx, signed, pki):
    sink = mx("127.0.0.2")
    signed.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(pki['leaf'])}")
    send(api)
    deliver_queued()
    assert sink.messages == []
    assert Recipient.objects.get().last_enhanced == "4.7.4"
    assert attempt().details["tls_policy"]["failure"] == "starttls-not-supported"


def test_bogus_tlsa_answer_defers_and_never_downgrades(api, domain, mx, signed, pki):
    sink = mx("127.0.0.2", tls_cert=pki["files"])
    signed.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(pki['leaf'])}")
    signed.tamper(TLSA_NAME, "TLSA")
    assert "does not validate" in deferred_as_dnssec_invalid(api, sink).last_text


def test_bogus_mx_answer_defers(api, domain, mx, signed, pki):
    sink = mx("127.0.0.2")
    signed.tamper(DOMAIN, "MX")
    send(api)
    deliver_queued()
    assert sink.messages == []
    recipient = Recipient.objects.get()
    assert recipient.state == RecipientState.DEFERRED
    assert f"MX of {DOMAIN}" in recipient.last_text


@pytest.mark.parametrize("denial", ["signed", "signed_nsec3"])
def test_signed_zone_without_tlsa_delivers_opportunistically(api, domain, mx, denial, request):
    request.getfixturevalue(denial)  # the TLSA record's absence proven with NSEC, then with NSEC3
    sink = mx("127.0.0.2")
    send(api)
    deliver_queued()
    assert [m.tls for m in sink.messages] == [False]
    assert attempt().details["tls_policy"]["policy"] == "opportunistic"


def test_unsigned_tlsa_is_ignored(api, domain, mx, zone, pki):
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "plain.example", "127.0.0.2")
    zone.add("_25._tcp.mx1.plain.example", "TLSA", f"3 1 1 {'00' * 32}")
    send(api, "jane@plain.example")
    deliver_queued()
    assert len(sink.messages) == 1
    assert attempt().details["tls_policy"]["policy"] == "opportunistic"


def test_dane_takes_precedence_over_mta_sts(api, domain, mx, signed, pki, settings, tmp_path):
    # An enforce policy whose PKIX check would fail (the MX's CA is not trusted), and valid DANE: DANE decides.
    (tmp_path / "web").mkdir()
    ca, ca_key, ca_file = make_ca(tmp_path / "web")
    settings.POSTWERK_EXTRA_CA_FILE = ca_file
    server = HttpReceiver("127.0.0.1", tls=make_leaf(tmp_path / "web", ca, ca_key, f"mta-sts.{DOMAIN}")).start()
    try:
        body = f"version: STSv1\nmode: enforce\nmx: {MX}\nmax_age: 86400\n".encode()
        server.pages["/.well-known/mta-sts.txt"] = (200, "text/plain", body)
        settings.POSTWERK_MTA_STS_PORT = server.port
        signed.add(f"mta-sts.{DOMAIN}", "A", "127.0.0.1")
        signed.add(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=1")
        signed.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(pki['leaf'])}")
        sink = mx("127.0.0.2", tls_cert=pki["files"])
        send(api)
        deliver_queued()
    finally:
        server.stop()
    assert len(sink.messages) == 1
    assert attempt().details["tls_policy"]["policy"] == "dane"


# --- authenticated denial with NSEC3 (RFC 5155) and NSEC (RFC 4035 §5.4) ------------------------------------


@pytest.fixture
def signed_nsec3(zone, settings):
    """The same zone, denied with NSEC3 (a salt and a few extra iterations, as many signers still use). With its
    eight other hosts, the three records of a closest-encloser proof for the MX's TLSA name are three different
    ones, so leaving one out leaves only that part unproven."""
    settings.POSTWERK_DNSSEC_TRUST_ANCHORS = [zone.sign_zone(DOMAIN, nsec3=True, salt=b"\xab\xcd", iterations=5)]
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    for i in range(8):
        zone.add(f"host{i}.{DOMAIN}", "A", "127.0.0.9")
    return zone


def test_nsec3_closest_encloser_proof_makes_a_missing_tlsa_record_secure(signed_nsec3, pki):
    signed_nsec3.add(TLSA_NAME, "TLSA", f"3 1 1 {spki_sha256(pki['leaf'])}")
    assert dnssec.lookup(TLSA_NAME, "TLSA").security is dnssec.Security.SECURE
    # NXDOMAIN: _25._tcp.mx9 does not exist; its closest encloser is the apex, proven by three NSEC3 records.
    response = dnssec.query(dns_name(f"_25._tcp.mx9.{DOMAIN}"), 52)
    assert sorted(r.rdtype for r in response.authority if r.rdtype in (50, 47)) == [50, 50, 50]
    missing = dnssec.lookup(f"_25._tcp.mx9.{DOMAIN}", "TLSA")
    assert (missing.security, missing.rrset) == (dnssec.Security.SECURE, None)
    # NODATA: the MX host exists without TLSA; its own NSEC3 says so.
    nodata = dnssec.lookup(MX, "TLSA")
    assert (nodata.security, nodata.rrset) == (dnssec.Security.SECURE, None)
    # An empty non-terminal (_tcp.mx1 exists only because _25._tcp.mx1 does) has its own NSEC3 too.
    assert dnssec.lookup(f"_tcp.{MX}", "TXT").security is dnssec.Security.SECURE


@pytest.mark.parametrize("left_out", ["closest-encloser", "next-closer", "wildcard"])
def test_an_nsec3_denial_missing_a_part_of_its_proof_is_bogus(signed_nsec3, left_out):
    signed_nsec3.omit_proof.add(left_out)
    answer = dnssec.lookup(TLSA_NAME, "TLSA")
    assert answer.security is dnssec.Security.BOGUS
    expected = {
        # Without mx1's own NSEC3 the apex is the closest encloser proven, and mx1 (which exists) is not covered.
        "closest-encloser": f"no NSEC3 record covers {MX}., the next closer name",
        "next-closer": f"no NSEC3 record covers _tcp.{MX}., the next closer name",
        "wildcard": f"no NSEC3 record proves that *.{MX}. does not exist",
    }[left_out]
    assert expected in answer.detail


def test_an_unproven_nsec3_denial_of_tlsa_defers_and_never_downgrades(api, domain, mx, signed_nsec3):
    sink = mx("127.0.0.2")
    signed_nsec3.omit_proof.add("next-closer")
    assert "next closer name" in deferred_as_dnssec_invalid(api, sink).last_text


def test_nsec3_with_too_many_iterations_is_insecure(zone, settings):
    settings.POSTWERK_DNSSEC_TRUST_ANCHORS = [zone.sign_zone(DOMAIN, nsec3=True, iterations=151)]
    add_mx_domain(zone, DOMAIN, "127.0.0.2")
    answer = dnssec.lookup(TLSA_NAME, "TLSA")
    assert answer.security is dnssec.Security.INSECURE
    assert "too many iterations" in answer.detail


def test_an_nsec_denial_without_its_wildcard_proof_is_bogus(signed):
    signed.omit_proof.add("wildcard")
    answer = dnssec.lookup(f"_25._tcp.mx9.{DOMAIN}", "TLSA")
    assert answer.security is dnssec.Security.BOGUS
    assert f"*.{DOMAIN}. does not exist" in answer.detail


def dns_name(text: str):
    import dns.name

    return dns.name.from_text(text)


@pytest.mark.parametrize("denial", ["signed", "signed_nsec3"])
def test_a_tlsa_answer_from_a_wildcard_is_secure_only_with_proof_that_no_closer_name_exists(denial, request, pki):
    zone = request.getfixturevalue(denial)
    zone.add(f"*._tcp.{MX}", "TLSA", f"3 1 1 {spki_sha256(pki['leaf'])}")
    answer = dnssec.lookup(TLSA_NAME, "TLSA")  # _25._tcp.mx1 has no records of its own: the wildcard's answer
    assert (answer.security, str(answer.rrset.name)) == (dnssec.Security.SECURE, f"{TLSA_NAME}.")

    dnssec.clear_caches()
    zone.omit_proof.add("wildcard-expansion")  # a wildcard's records replayed without the denial of the name
    answer = dnssec.lookup(TLSA_NAME, "TLSA")
    assert answer.security is dnssec.Security.BOGUS
    # The wildcard is *._tcp.mx1, so the next closer name is the TLSA name itself.
    assert answer.detail == f"{TLSA_NAME}. was answered from a wildcard without proof that {TLSA_NAME}. does not exist"
