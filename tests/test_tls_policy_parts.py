"""The pure parts of mail.tls_policy: NSEC3 denial proofs, DANE matching, TLS-RPT records and report shape."""

from __future__ import annotations

import datetime as dt
import hashlib

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mail.tls_policy import dane, tlsrpt
from mail.tls_policy.dnssec import Security, _nsec3_denies, parse_anchor
from mail.tls_policy.results import Failure, certificate_failure
from tests.security.pki import make_ca, make_leaf


def nsec3(owner_of: str, zone: str, types: str) -> dns.rrset.RRset:
    label = dns.dnssec.nsec3_hash(owner_of, "ab", 1, 1).lower()
    nxt = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"  # the highest hash: this record covers everything after its owner
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.NSEC3, f"1 0 1 ab {nxt} {types}")
    return dns.rrset.from_rdata_list(dns.name.from_text(f"{label}.{zone}"), 300, [rdata])


def test_nsec3_nodata_proof_needs_the_matching_hash_without_the_type():
    qname = dns.name.from_text("_25._tcp.mx.example.")

    def verdict(record: dns.rrset.RRset) -> Security:
        return _nsec3_denies([record], qname, dns.rdatatype.TLSA, False).security

    assert verdict(nsec3("_25._tcp.mx.example.", "example.", "A RRSIG")) is Security.SECURE
    assert verdict(nsec3("_25._tcp.mx.example.", "example.", "TLSA RRSIG")) is Security.BOGUS
    assert verdict(nsec3("other.example.", "example.", "A")) is Security.BOGUS


def test_trust_anchor_parsing_accepts_ds_and_dnskey_with_optional_ttl_and_class():
    owner, rdata = parse_anchor(
        ". 172800 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"
    )
    assert (owner, rdata.rdtype, rdata.key_tag) == (dns.name.root, dns.rdatatype.DS, 20326)


def test_dane_ee_matches_by_key_and_by_whole_certificate(tmp_path):
    ca, ca_key, _ = make_ca(tmp_path)
    cert_path, _ = make_leaf(tmp_path, ca, ca_key, "mx.example", expired=True)
    leaf = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    der = leaf.public_bytes(serialization.Encoding.DER)
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    by_key = dane.Tlsa(3, 1, 1, hashlib.sha256(spki).digest())
    by_cert = dane.Tlsa(3, 0, 2, hashlib.sha512(der).digest())
    # DANE-EE ignores names and dates (RFC 7672 §3.1.1): an expired certificate for any name matches.
    assert dane.verify([der], [by_key], ["other.example"]) is None
    assert dane.verify([der], [by_cert], ["other.example"]) is None
    assert (
        dane.verify([der], [dane.Tlsa(3, 1, 1, b"\0" * 32)], ["mx.example"])
        == "no certificate matches the TLSA records"
    )
    # PKIX-EE (usage 1) is unusable for SMTP (RFC 7672 §3.1.3).
    assert dane.verify([der], [dane.Tlsa(1, 1, 1, hashlib.sha256(spki).digest())], ["mx.example"]) is not None


def test_certificate_failures_map_to_tlsrpt_result_types():
    assert (
        certificate_failure("failed: validation failed: cert is not valid at validation time")
        == Failure.CERTIFICATE_EXPIRED
    )
    assert (
        certificate_failure("failed: leaf certificate has no matching subjectAltName")
        == Failure.CERTIFICATE_HOST_MISMATCH
    )
    assert certificate_failure("failed: candidates exhausted") == Failure.CERTIFICATE_NOT_TRUSTED


def test_rua_needs_one_tlsrpt_record_and_keeps_mailto_and_https_only():
    record = "v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/v1,http://plain.example"
    assert tlsrpt.rua([record, "v=spf1 -all"]) == ["mailto:tls@example.com", "https://r.example.com/v1"]
    assert tlsrpt.rua([record, record]) == []
    assert tlsrpt.mailto_address("mailto:tls%2Breports@example.com?subject=x") == "tls+reports@example.com"


def test_report_groups_rows_by_policy_with_totals_and_failure_details():
    sts = {"policy-string": ["version: STSv1", "mode: enforce"], "mx-host": ["*.mx.example"]}
    rows = [
        tlsrpt.SessionCount("sts", sts, "", "a.mx.example", "127.0.0.1", "127.0.0.2", 7),
        tlsrpt.SessionCount("sts", sts, "certificate-expired", "b.mx.example", "127.0.0.1", "127.0.0.3", 2),
    ]
    report = tlsrpt.build_report(
        domain="d.example", day=dt.date(2026, 12, 6), counts=rows, organization="o", contact="c", report_id="r"
    )
    assert report["policies"] == [
        {
            "policy": {"policy-type": "sts", "policy-domain": "d.example", **sts},
            "summary": {"total-successful-session-count": 7, "total-failure-session-count": 2},
            "failure-details": [
                {
                    "result-type": "certificate-expired",
                    "sending-mta-ip": "127.0.0.1",
                    "receiving-ip": "127.0.0.3",
                    "receiving-mx-hostname": "b.mx.example",
                    "failed-session-count": 2,
                }
            ],
        }
    ]
    name = tlsrpt.filename(submitter="s.example", domain="d.example", day=dt.date(2026, 12, 6), report_id="r")
    assert name == "s.example!d.example!1796515200!1796601599!r.json.gz"
