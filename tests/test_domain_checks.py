"""Sender-domain DNS checks against the real loopback DNS server: records, DKIM, SPF, DMARC, return path."""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from sending.domains.checks.checks import run_checks
from sending.domains.checks.dkim_record import DkimRecordError, check_dkim, parse_dkim_record
from sending.domains.checks.dmarc import (
    DmarcRecord,
    DmarcRecordError,
    applied_policy,
    check_dmarc,
    dmarc_alignment,
    domain_name,
    lookup_dmarc,
    organizational_domain,
    parse_dmarc,
    walk_targets,
)
from sending.domains.checks.ownership import check_ownership
from sending.domains.checks.records import expected_records, spf_merge
from sending.domains.checks.return_path_check import check_return_path
from sending.domains.checks.spec import CheckStatus, DkimKeySpec, DomainSpec
from sending.domains.checks.spf_check import check_spf, evaluate_spf

DOMAIN = "acme.example"
RP_HOST = f"pm-bounces.{DOMAIN}"
RP_TARGET = "rp.postwerk.example"
PLATFORM_INCLUDE = "_spf.postwerk.example"
PLATFORM_MX = "mx.postwerk.example"
SENDING_IPS = ("127.0.0.1", "127.0.0.10")
TOKEN = "tok-3f9a1c"
# What Postwerk recommends by default: within the domain's own organizational domain, so receivers need no
# `_report._dmarc` authorisation (RFC 7489 §7.1); the external case has tests of its own.
RUA = f"mailto:dmarc-reports@{RP_HOST}"
INCLUDE = f"include:{PLATFORM_INCLUDE}"


def new_rsa_b64() -> str:
    """A DKIM p= value for a fresh RSA key: base64 SubjectPublicKeyInfo DER (RFC 6376 §3.6.1)."""
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def rsa_b64() -> str:
    return new_rsa_b64()


@pytest.fixture(scope="module")
def ed_b64() -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@pytest.fixture
def spec(rsa_b64: str, ed_b64: str) -> DomainSpec:
    return DomainSpec(
        name=DOMAIN,
        verification_token=TOKEN,
        dkim_keys=(DkimKeySpec("pw202401", "rsa", rsa_b64), DkimKeySpec("pwed202401", "ed25519", ed_b64)),
        return_path_host=RP_HOST,
        platform_return_path_target=RP_TARGET,
        platform_mx_hosts=(PLATFORM_MX,),
        spf_include=PLATFORM_INCLUDE,
        sending_ips=SENDING_IPS,
        dmarc_rua=RUA,
    )


@pytest.fixture
def zone(dns_server):
    """The platform's own records, which every owner's setup leans on."""
    dns_server.add(PLATFORM_INCLUDE, "TXT", "v=spf1 ip4:127.0.0.1 ip4:127.0.0.10 -all")
    dns_server.add(RP_TARGET, "TXT", f"v=spf1 {INCLUDE} -all")
    dns_server.add(RP_TARGET, "MX", f"10 {PLATFORM_MX}.")
    dns_server.add(PLATFORM_MX, "A", "127.0.0.3")
    return dns_server


def publish_all(zone, spec: DomainSpec, *, dmarc: str | None = f"v=DMARC1; p=reject; rua={RUA}") -> None:
    zone.add(spec.name, "TXT", f"postwerk-verification={spec.verification_token}")
    zone.add(spec.name, "TXT", f"v=spf1 mx {INCLUDE} -all")
    for key in spec.dkim_keys:
        zone.add(key.record_name(spec.name), "TXT", f"v=DKIM1; k={key.algorithm}; p={key.public_key_b64}")
    zone.add(spec.return_path_host, "CNAME", f"{RP_TARGET}.")
    if dmarc:
        zone.add(f"_dmarc.{spec.name}", "TXT", dmarc)


def by_key(results):
    return {r.key: r for r in results}


def split_presentation(text: str, size: int) -> str:
    """TXT presentation format with the value cut into several quoted character-strings."""
    return " ".join(f'"{text[i : i + size]}"' for i in range(0, len(text), size))


# --------------------------------------------------------------------------- the whole set


def test_correct_setup_passes_every_check(zone, spec):
    publish_all(zone, spec)

    results = by_key(run_checks(spec))

    assert list(results) == [
        "ownership",
        "dkim:pw202401",
        "dkim:pwed202401",
        "spf:from",
        "return_path",
        "spf:return_path",
        "dmarc",
    ]
    assert {k: r.status for k, r in results.items()} == dict.fromkeys(results, CheckStatus.OK)
    assert results["spf:from"].details["result"] == "pass"
    assert results["spf:from"].details["results"] == {"127.0.0.1": "pass", "127.0.0.10": "pass"}
    assert results["dmarc"].details["alignment"] == {
        "dkim_aligned": True,
        "spf_aligned": True,
        "policy": "reject",
        "would_be_rejected": False,
    }
    assert results["dmarc"].details["rua_includes_ours"] is True


def test_nothing_published_is_missing_everywhere_and_says_what_to_add(zone, spec):
    results = by_key(run_checks(spec))

    assert {k: r.status for k, r in results.items()} == dict.fromkeys(results, CheckStatus.MISSING)
    assert f"postwerk-verification={TOKEN}" in results["ownership"].message
    assert f"pw202401._domainkey.{DOMAIN}" in results["dkim:pw202401"].message
    assert f"v=spf1 {INCLUDE} ~all" in results["spf:from"].message
    assert f"CNAME record at {RP_HOST} pointing to {RP_TARGET}" in results["return_path"].message
    assert f"v=DMARC1; p=none; rua={RUA}" in results["dmarc"].message
    assert results["spf:from"].details["result"] == "none"


# --------------------------------------------------------------------------- expected records


def test_expected_records_for_a_fresh_domain(zone, spec, rsa_b64, ed_b64):
    records = expected_records(spec)

    assert [(r.purpose, r.type, r.name, r.value) for r in records] == [
        ("ownership", "TXT", DOMAIN, f"postwerk-verification={TOKEN}"),
        ("dkim", "TXT", f"pw202401._domainkey.{DOMAIN}", f"v=DKIM1; k=rsa; p={rsa_b64}"),
        ("dkim", "TXT", f"pwed202401._domainkey.{DOMAIN}", f"v=DKIM1; k=ed25519; p={ed_b64}"),
        ("return_path", "CNAME", RP_HOST, RP_TARGET),
        ("spf", "TXT", DOMAIN, f"v=spf1 {INCLUDE} ~all"),
        ("dmarc", "TXT", f"_dmarc.{DOMAIN}", f"v=DMARC1; p=none; rua={RUA}"),
    ]
    assert "RFC 8463" in records[2].note


def test_expected_spf_is_merged_into_the_existing_record_and_dmarc_kept(zone, spec):
    zone.add(DOMAIN, "TXT", "google-site-verification=abc")
    zone.add(DOMAIN, "TXT", "v=spf1 mx ip4:127.0.0.50 -all")
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=quarantine")

    records = {r.purpose: r for r in expected_records(spec)}

    assert records["spf"].value == f"v=spf1 mx ip4:127.0.0.50 {INCLUDE} -all"
    assert "never publish a second SPF record" in records["spf"].note
    assert "dmarc" not in records


def test_expected_spf_uses_ip_terms_when_the_platform_has_no_include(zone, spec):
    spec = dataclasses.replace(spec, spf_include=None, sending_ips=["127.0.0.1", "::1"])

    spf = next(r for r in expected_records(spec) if r.purpose == "spf")

    assert spf.value == "v=spf1 ip4:127.0.0.1 ip6:::1 ~all"


def test_dmarc_rua_without_mailto_prefix_gets_one(zone, spec):
    spec = dataclasses.replace(spec, dmarc_rua="dmarc@postwerk.example")

    dmarc = next(r for r in expected_records(spec) if r.purpose == "dmarc")

    assert dmarc.value == "v=DMARC1; p=none; rua=mailto:dmarc@postwerk.example"


# --------------------------------------------------------------------------- spf_merge


@pytest.mark.parametrize(
    ("existing", "merged"),
    [
        (None, f"v=spf1 {INCLUDE} ~all"),
        ("", f"v=spf1 {INCLUDE} ~all"),
        ("v=spf1 mx -all", f"v=spf1 mx {INCLUDE} -all"),
        ("v=spf1 include:_spf.other.example ~all", f"v=spf1 include:_spf.other.example {INCLUDE} ~all"),
        ("v=spf1 a mx ?all", f"v=spf1 a mx {INCLUDE} ?all"),
        ("v=spf1 mx redirect=_spf.other.example", f"v=spf1 mx {INCLUDE} redirect=_spf.other.example"),
        ("v=spf1 mx", f"v=spf1 mx {INCLUDE}"),
        ("v=spf1 mx exp=explain.acme.example", f"v=spf1 mx {INCLUDE} exp=explain.acme.example"),
        ("v=spf1  ip4:192.0.2.0/24   -all", f"v=spf1  ip4:192.0.2.0/24   {INCLUDE} -all"),
        ("V=SPF1 MX -ALL", f"V=SPF1 MX {INCLUDE} -ALL"),
        (f"v=spf1 {INCLUDE} -all", f"v=spf1 {INCLUDE} -all"),
        (f"v=spf1 +{INCLUDE.upper()} -all", f"v=spf1 +{INCLUDE.upper()} -all"),
    ],
)
def test_spf_merge_inserts_before_all_or_redirect_and_keeps_the_rest(existing, merged):
    assert spf_merge(existing, INCLUDE) == merged


def test_spf_merge_adds_only_the_missing_ip_terms():
    assert (
        spf_merge("v=spf1 ip4:127.0.0.1 ~all", "ip4:127.0.0.1 ip4:127.0.0.10")
        == "v=spf1 ip4:127.0.0.1 ip4:127.0.0.10 ~all"
    )


def test_spf_merge_refuses_a_record_that_is_not_spf():
    with pytest.raises(ValueError, match="not an SPF record"):
        spf_merge("v=DMARC1; p=none", INCLUDE)


# --------------------------------------------------------------------------- ownership


def test_ownership_token_found_among_other_txt_records(zone, spec):
    zone.add(DOMAIN, "TXT", "v=spf1 -all")
    zone.add(DOMAIN, "TXT", f"postwerk-verification={TOKEN}")

    assert check_ownership(spec).status is CheckStatus.OK


def test_ownership_with_another_token_is_wrong(zone, spec):
    zone.add(DOMAIN, "TXT", "postwerk-verification=someone-else")

    result = check_ownership(spec)

    assert result.status is CheckStatus.WRONG
    assert f"Change that TXT record to: postwerk-verification={TOKEN}" in result.message


# --------------------------------------------------------------------------- DKIM


def test_dkim_key_split_over_several_strings_with_whitespace_in_p_matches(zone, spec, rsa_b64):
    key = spec.dkim_keys[0]
    spaced = " ".join(rsa_b64[i : i + 60] for i in range(0, len(rsa_b64), 60))
    zone.add(key.record_name(DOMAIN), "TXT", split_presentation(f"v=DKIM1; k=rsa; p={spaced}", 100))

    result = check_dkim(spec, key)

    assert result.status is CheckStatus.OK, result.message
    assert result.details["tags"]["k"] == "rsa"


def test_dkim_missing_says_which_record_to_add(zone, spec, rsa_b64):
    result = check_dkim(spec, spec.dkim_keys[0])

    assert result.status is CheckStatus.MISSING
    assert result.message.endswith(f"v=DKIM1; k=rsa; p={rsa_b64}")


def test_dkim_with_another_key_is_wrong_not_just_present(zone, spec):
    key = spec.dkim_keys[0]
    other = new_rsa_b64()
    zone.add(key.record_name(DOMAIN), "TXT", f"v=DKIM1; k=rsa; p={other}")

    result = check_dkim(spec, key)

    assert result.status is CheckStatus.WRONG
    assert "different public key" in result.message


def test_dkim_same_rsa_key_in_pkcs1_form_is_accepted(zone, spec, rsa_b64):
    key = spec.dkim_keys[0]
    public = serialization.load_der_public_key(base64.b64decode(rsa_b64))
    pkcs1 = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    zone.add(key.record_name(DOMAIN), "TXT", f"k=rsa; p={base64.b64encode(pkcs1).decode()}")

    assert check_dkim(spec, key).status is CheckStatus.OK


def test_dkim_revoked_key_is_wrong(zone, spec):
    key = spec.dkim_keys[0]
    zone.add(key.record_name(DOMAIN), "TXT", "v=DKIM1; k=rsa; p=")

    result = check_dkim(spec, key)

    assert result.status is CheckStatus.WRONG
    assert "revoked" in result.message


def test_dkim_ed25519_key_published_as_rsa_is_wrong(zone, spec, ed_b64):
    key = spec.dkim_keys[1]
    zone.add(key.record_name(DOMAIN), "TXT", f"v=DKIM1; k=rsa; p={ed_b64}")

    result = check_dkim(spec, key)

    assert result.status is CheckStatus.WRONG
    assert "k=rsa, not k=ed25519" in result.message


def test_dkim_two_records_at_one_selector_is_wrong(zone, spec, rsa_b64):
    key = spec.dkim_keys[0]
    zone.add(key.record_name(DOMAIN), "TXT", f"v=DKIM1; k=rsa; p={rsa_b64}")
    zone.add(key.record_name(DOMAIN), "TXT", "v=DKIM1; k=rsa; p=")

    assert check_dkim(spec, key).status is CheckStatus.WRONG


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("k=rsa; v=DKIM1; p=AAAA", "must be the first tag"),
        ("v=DKIM2; p=AAAA", "is not v=DKIM1"),
        ("v=DKIM1; k=rsa", "p= tag"),
        ("v=DKIM1; p=not base64!", "not valid base64"),
        ("v=DKIM1; p=AAAA; p=AAAA", "more than once"),
        ("v=DKIM1; k", "not a tag=value pair"),
    ],
)
def test_dkim_record_parse_errors_name_the_problem(text, reason):
    with pytest.raises(DkimRecordError, match=reason):
        parse_dkim_record(text)


def test_dkim_record_parse_reads_flags_hashes_and_service():
    record = parse_dkim_record("v=DKIM1;h=sha256:sha1 ; k=ED25519; s=email; t=y:s; p= AA AA ;")

    assert (record.key_type, record.hash_algorithms, record.service_types, record.flags) == (
        "ed25519",
        ("sha256", "sha1"),
        ("email",),
        ("y", "s"),
    )
    assert record.public_key == base64.b64decode("AAAA")
    assert record.testing


# --------------------------------------------------------------------------- SPF


def test_spf_with_our_include_passes(zone, spec):
    zone.add(DOMAIN, "TXT", f"v=spf1 {INCLUDE} ~all")

    result = check_spf(spec)

    assert result.status is CheckStatus.OK
    assert result.details["result"] == "pass"


@pytest.mark.parametrize(("all_term", "expected"), [("~all", "softfail"), ("-all", "fail"), ("?all", "neutral")])
def test_spf_without_our_include_is_wrong_with_the_merged_record(zone, spec, all_term, expected):
    zone.add(DOMAIN, "TXT", f"v=spf1 ip4:127.0.0.50 {all_term}")

    result = check_spf(spec)

    assert result.status is CheckStatus.WRONG
    assert result.details["result"] == expected
    assert result.details["results"] == {"127.0.0.1": expected, "127.0.0.10": expected}
    assert result.message.endswith(f"to: v=spf1 ip4:127.0.0.50 {INCLUDE} {all_term}")


def test_spf_follows_a_chain_of_includes_and_redirect(zone, spec):
    zone.add(DOMAIN, "TXT", "v=spf1 include:one.acme.example -all")
    zone.add("one.acme.example", "TXT", "v=spf1 ip4:127.0.0.60 include:two.acme.example -all")
    zone.add("two.acme.example", "TXT", "v=spf1 redirect=three.acme.example")
    zone.add("three.acme.example", "TXT", f"v=spf1 {INCLUDE} -all")

    result = check_spf(spec)

    assert result.status is CheckStatus.OK, result.message
    assert result.details["dns_lookups"] == 4


def test_spf_with_exactly_ten_lookups_still_passes(zone, spec):
    for n in range(9):
        zone.add(f"s{n}.acme.example", "TXT", f"v=spf1 ip4:127.0.1.{n} -all")
    includes = " ".join(f"include:s{n}.acme.example" for n in range(9))
    zone.add(DOMAIN, "TXT", f"v=spf1 {includes} {INCLUDE} -all")

    result = check_spf(spec)

    assert result.status is CheckStatus.OK, result.message
    assert result.details["dns_lookups"] == 10


def test_spf_over_ten_lookups_is_permerror(zone, spec):
    for n in range(10):
        zone.add(f"s{n}.acme.example", "TXT", f"v=spf1 ip4:127.0.1.{n} -all")
    includes = " ".join(f"include:s{n}.acme.example" for n in range(10))
    zone.add(DOMAIN, "TXT", f"v=spf1 {includes} {INCLUDE} -all")

    result = check_spf(spec)

    assert result.status is CheckStatus.WRONG
    assert result.details["result"] == "permerror"
    assert "more than 10 DNS lookups" in result.message


def test_spf_over_two_void_lookups_is_permerror(zone, spec):
    zone.add(DOMAIN, "TXT", f"v=spf1 a:nx1.acme.example a:nx2.acme.example a:nx3.acme.example {INCLUDE} -all")

    result = check_spf(spec)

    assert result.details["result"] == "permerror"
    assert "More than 2 of its lookups found nothing" in result.message


def test_two_spf_records_are_permerror_and_we_suggest_one(zone, spec):
    zone.add(DOMAIN, "TXT", f"v=spf1 {INCLUDE} -all")
    zone.add(DOMAIN, "TXT", "v=spf1 mx -all")

    result = check_spf(spec)

    assert result.status is CheckStatus.WRONG
    assert result.details["result"] == "permerror"
    assert "single SPF record instead of 2" in result.message


def test_spf_macro_exists_is_expanded_per_ip(zone, spec):
    zone.add(DOMAIN, "TXT", "v=spf1 exists:%{i}._spf.acme.example -all")
    zone.add("127.0.0.1._spf.acme.example", "A", "127.0.0.2")

    result = check_spf(spec)

    assert result.status is CheckStatus.WRONG
    assert result.details["results"] == {"127.0.0.1": "pass", "127.0.0.10": "fail"}
    assert result.details["result"] == "fail"

    zone.add("127.0.0.10._spf.acme.example", "A", "127.0.0.2")
    assert check_spf(spec).status is CheckStatus.OK


def test_spf_with_ip_terms_instead_of_an_include(zone, spec):
    spec = dataclasses.replace(spec, spf_include=None)
    zone.add(DOMAIN, "TXT", "v=spf1 ip4:127.0.0.0/24 -all")

    assert check_spf(spec).status is CheckStatus.OK


def test_spf_without_configured_ips_checks_the_record_names_our_include(zone, spec):
    spec = dataclasses.replace(spec, sending_ips=())
    zone.add(DOMAIN, "TXT", "v=spf1 mx ~all")

    lacking = check_spf(spec)
    zone.remove(DOMAIN)
    zone.add(DOMAIN, "TXT", f"v=spf1 mx {INCLUDE} ~all")
    including = check_spf(spec)

    assert (lacking.status, lacking.details["evaluated"]) == (CheckStatus.WRONG, False)
    assert lacking.message.endswith(f"v=spf1 mx {INCLUDE} ~all")
    assert including.status is CheckStatus.OK


def test_evaluate_spf_reports_the_lookup_counts(zone):
    zone.add("counted.example", "TXT", "v=spf1 a mx include:_spf.postwerk.example -all")

    evaluation = evaluate_spf("counted.example", "127.0.0.1")

    assert evaluation.result == "pass"
    assert (evaluation.dns_lookups, evaluation.void_lookups) == (3, 2)


def test_return_path_spf_is_evaluated_on_the_cname(zone, spec):
    zone.add(RP_HOST, "CNAME", f"{RP_TARGET}.")

    result = check_spf(spec, "return_path")

    assert result.status is CheckStatus.OK, result.message
    assert result.details["domain"] == RP_HOST
    assert (RP_HOST, "TXT") in {(q[0], q[1]) for q in zone.queries}


def test_return_path_spf_missing_points_at_cname_or_txt(zone, spec):
    result = check_spf(spec, "return_path")

    assert result.status is CheckStatus.MISSING
    assert f"CNAME at {RP_HOST} pointing to {RP_TARGET}" in result.message
    assert f"v=spf1 {INCLUDE} -all" in result.message


def test_return_path_spf_missing_behind_our_cname_is_the_operators_to_fix(zone, spec):
    """The owner's CNAME is there (the return-path check says so): the record missing is the platform's own."""
    publish_all(zone, spec)
    zone.remove(RP_TARGET, "TXT")

    results = by_key(run_checks(spec))

    assert results["return_path"].status is CheckStatus.OK
    spf = results["spf:return_path"]
    assert spf.status is CheckStatus.MISSING
    assert spf.message == (
        f"{RP_HOST} is a CNAME to {RP_TARGET}, as it should be: nothing to change on your side. The platform's "
        f"host {RP_TARGET} has no SPF record. The Postwerk operator must publish a TXT record at {RP_TARGET} with "
        f"the value: v=spf1 {INCLUDE} -all, and a TXT record at {PLATFORM_INCLUDE} with the value: "
        "v=spf1 ip4:127.0.0.1 ip4:127.0.0.10 -all"
    )


def test_return_path_spf_with_the_platforms_include_missing_names_the_operator(zone, spec):
    publish_all(zone, spec)
    zone.remove(PLATFORM_INCLUDE, "TXT")

    spf = by_key(run_checks(spec))["spf:return_path"]

    assert spf.status is CheckStatus.WRONG
    assert spf.message == (
        f"{RP_HOST} is a CNAME to {RP_TARGET}, as it should be: nothing to change on your side. The platform's "
        f"host {RP_TARGET} has an SPF record that fails (No valid SPF record for included domain: "
        f"{PLATFORM_INCLUDE}). The Postwerk operator must publish a TXT record at {RP_TARGET} with the value: "
        f"v=spf1 {INCLUDE} -all, and a TXT record at {PLATFORM_INCLUDE} with the value: "
        "v=spf1 ip4:127.0.0.1 ip4:127.0.0.10 -all"
    )


# --------------------------------------------------------------------------- return path


def test_return_path_cname_to_platform_is_ok(zone, spec):
    zone.add(RP_HOST, "CNAME", f"{RP_TARGET}.")

    result = check_return_path(spec)

    assert result.status is CheckStatus.OK
    assert result.details["method"] == "cname"


def test_return_path_cname_elsewhere_is_wrong(zone, spec):
    zone.add(RP_HOST, "CNAME", "bounces.elsewhere.example.")

    result = check_return_path(spec)

    assert result.status is CheckStatus.WRONG
    assert f"Change the CNAME target to {RP_TARGET}" in result.message


def test_return_path_missing(zone, spec):
    zone.add(DOMAIN, "A", "127.0.0.5")

    assert check_return_path(spec).status is CheckStatus.MISSING


def test_return_path_mx_alternative_with_spf(zone, spec):
    zone.add(RP_HOST, "MX", f"10 {PLATFORM_MX}.")
    zone.add(RP_HOST, "TXT", f"v=spf1 {INCLUDE} -all")

    assert check_return_path(spec).status is CheckStatus.OK
    assert check_spf(spec, "return_path").status is CheckStatus.OK


def test_return_path_mx_to_another_host_is_wrong(zone, spec):
    zone.add(RP_HOST, "MX", "10 mx.elsewhere.example.")

    result = check_return_path(spec)

    assert result.status is CheckStatus.WRONG
    assert PLATFORM_MX in result.message


# --------------------------------------------------------------------------- DMARC


def test_dmarc_missing_recommends_a_monitoring_record(zone, spec):
    result = check_dmarc(spec)

    assert result.status is CheckStatus.MISSING
    assert result.details["recommended"] == f"v=DMARC1; p=none; rua={RUA}"
    # RFC 9989's tree walk goes on to the top-level domain before calling the policy missing.
    assert result.details["checked"] == [f"_dmarc.{DOMAIN}", "_dmarc.example"]


def test_dmarc_reject_without_alignment_would_be_rejected(zone, spec):
    publish_all(zone, spec)
    zone.remove(spec.dkim_keys[0].record_name(DOMAIN))
    zone.remove(spec.dkim_keys[1].record_name(DOMAIN))
    zone.remove(RP_HOST)

    results = by_key(run_checks(spec))

    dmarc = results["dmarc"]
    assert dmarc.status is CheckStatus.WRONG
    assert dmarc.details["would_be_rejected"] is True
    assert dmarc.details["alignment"]["policy"] == "reject"
    assert "refuse our mail" in dmarc.message


def test_dmarc_strict_spf_alignment_is_exact_match(zone, spec):
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject; aspf=s")

    result = check_dmarc(spec, dkim_ok=False)

    assert result.status is CheckStatus.WRONG
    assert result.details["alignment"]["spf_aligned"] is False
    assert check_dmarc(spec, dkim_ok=True).status is CheckStatus.OK


def test_dmarc_falls_back_to_the_organizational_domain_and_applies_sp(zone, spec):
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none; sp=quarantine")
    sub = dataclasses.replace(spec, name=f"mail.{DOMAIN}", return_path_host=f"pm-bounces.mail.{DOMAIN}")

    found = lookup_dmarc(sub.name)
    result = check_dmarc(sub)

    assert (found.status, found.found_at) == ("found", DOMAIN)
    assert found.checked == (f"_dmarc.mail.{DOMAIN}", f"_dmarc.{DOMAIN}", "_dmarc.example")
    assert found.org_domain == DOMAIN
    assert result.status is CheckStatus.OK
    assert result.details["found_at"] == DOMAIN
    assert result.details["policy"] == "quarantine"


def test_dmarc_malformed_record_is_wrong_with_the_reason(zone, spec):
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=block")

    result = check_dmarc(spec)

    assert result.status is CheckStatus.WRONG
    assert "p=block is not one of none, quarantine, reject" in result.message


def test_dmarc_two_records_are_wrong(zone, spec):
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none")
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")

    result = check_dmarc(spec)

    assert result.status is CheckStatus.WRONG
    assert "Keep exactly one" in result.message


def test_dmarc_parse_reads_every_tag():
    record = parse_dmarc(
        "v=DMARC1; p=Reject; sp=none; adkim=s; aspf=r; pct=50; "
        "rua=mailto:a@acme.example,mailto:b@postwerk.example!10m; ruf=mailto:f@acme.example; fo=1:d; ri=3600; x=y"
    )

    assert (record.p, record.sp, record.adkim, record.aspf, record.pct) == ("reject", "none", "s", "r", 50)
    assert record.rua == ("mailto:a@acme.example", "mailto:b@postwerk.example")
    assert record.ruf == ("mailto:f@acme.example",)
    assert record.tags["x"] == "y"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("p=none; v=DMARC1", "must be the first tag"),
        ("v=DMARC2; p=none", "is not v=DMARC1"),
        ("v=DMARC1", "p= tag"),
        ("v=DMARC1; p=none; sp=drop", "sp=drop"),
        ("v=DMARC1; p=none; adkim=x", "adkim=x"),
        ("v=DMARC1; p=none; pct=101", "pct=101"),
        ("v=DMARC1; p=none; pct=-1", "pct=-1"),
        ("v=DMARC1; p=none; rua=https://acme.example/r", "not a mailto"),
        ("v=DMARC1; p=none; rua=mailto:nobody", "not a mailto"),
        ("v=DMARC1; p=none; p=reject", "more than once"),
        ("v=DMARC1; p=none; fo=2", "fo=2"),
    ],
)
def test_dmarc_parse_rejects_malformed_records(text, reason):
    with pytest.raises(DmarcRecordError, match=reason):
        parse_dmarc(text)


@pytest.mark.parametrize(
    ("name", "org"),
    [
        ("mail.acme.example", "acme.example"),
        ("acme.example", "acme.example"),
        ("a.b.acme.co.uk", "acme.co.uk"),
        ("ACME.Example.", "acme.example"),
    ],
)
def test_organizational_domain_uses_the_public_suffix_list(name, org):
    assert organizational_domain(name) == org


def test_alignment_relaxed_strict_and_subdomain_policy():
    relaxed = DmarcRecord(p="reject", found_at=DOMAIN)
    strict = DmarcRecord(p="reject", adkim="s", aspf="s", found_at=DOMAIN)
    sub_policy = DmarcRecord(p="reject", sp="none", found_at=DOMAIN)

    loose = dmarc_alignment(DOMAIN, [f"mail.{DOMAIN}"], RP_HOST, relaxed)
    assert (loose.dkim_aligned, loose.spf_aligned, loose.policy, loose.would_be_rejected) == (
        True,
        True,
        "reject",
        False,
    )
    aligned = dmarc_alignment(DOMAIN, [f"mail.{DOMAIN}"], RP_HOST, strict)
    assert (aligned.dkim_aligned, aligned.spf_aligned, aligned.would_be_rejected) == (False, False, True)
    assert not dmarc_alignment(DOMAIN, [DOMAIN], RP_HOST, strict).would_be_rejected
    foreign = dmarc_alignment(DOMAIN, ["postwerk.example"], "bounces.postwerk.example", relaxed)
    assert foreign.would_be_rejected
    # sp= governs a subdomain whose policy came from the organizational domain's record.
    sub = dmarc_alignment(f"mail.{DOMAIN}", [], None, sub_policy)
    assert (sub.policy, sub.would_be_rejected) == ("none", False)
    assert dmarc_alignment(DOMAIN, [], None, sub_policy).policy == "reject"
    no_record = dmarc_alignment(DOMAIN, [], None, None)
    assert (no_record.policy, no_record.would_be_rejected) == ("none", False)


# --------------------------------------------------------------------------- DMARC as the RFCs read it


def test_dmarc_record_without_p_but_with_a_valid_rua_is_p_none_with_a_warning(zone, spec):
    # RFC 7489 §6.6.3: receivers read it as p=none so reports keep flowing; the owner hears what to fix.
    zone.add(f"_dmarc.{DOMAIN}", "TXT", f"v=DMARC1; rua={RUA}")

    result = check_dmarc(spec)

    assert result.status is CheckStatus.OK
    assert result.details["policy"] == "none"
    assert result.details["warnings"] == [
        "the p= tag (the policy: none, quarantine or reject) is missing; receivers read the record as p=none "
        "because it has a valid rua="
    ]
    assert "To fix in the record: the p= tag" in result.message


@pytest.mark.parametrize(
    "text", ["v=DMARC1; p=block; rua=mailto:r@acme.example", "v=DMARC1; p=reject; sp=x; rua=mailto:r@acme.example"]
)
def test_dmarc_invalid_p_or_sp_with_a_valid_rua_reads_as_p_none(text):
    record = parse_dmarc(text)

    assert (record.p, record.sp) == ("none", None)
    assert len(record.warnings) == 1


def test_dmarc_one_bad_report_uri_among_good_ones_is_skipped_with_a_warning():
    record = parse_dmarc("v=DMARC1; p=none; rua=mailto:a@acme.example,https://acme.example/r")

    assert record.rua == ("mailto:a@acme.example",)
    assert record.warnings == ("rua= has 'https://acme.example/r', which is not a mailto: address; receivers skip it",)


@pytest.mark.parametrize(
    ("text", "warnings"),
    [
        ("v=DMARC1; p=none; rf=afrf", ()),
        ("v=DMARC1; p=none; rf=AFRF:iodef", ()),
        (
            "v=DMARC1; p=none; rf=iodef",
            ("rf=iodef names no format receivers know (afrf): no failure reports will come",),
        ),
    ],
)
def test_dmarc_rf_is_validated(text, warnings):
    assert parse_dmarc(text).warnings == warnings


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("v=DMARC1; p=none; rf=afrf iodef", "rf=afrf iodef must be report format names"),
        ("v=DMARC1; p=none; rf=", "rf= must be report format names"),
        ("v=DMARC1; p=none; np=drop", "np=drop is not one of"),
        ("v=DMARC1; p=none; psd=maybe", "psd=maybe must be y, n or u"),
        ("v=DMARC1; p=none; t=1", "t=1 must be y or n"),
    ],
)
def test_dmarc_new_tags_refuse_bad_values(text, reason):
    with pytest.raises(DmarcRecordError, match=reason):
        parse_dmarc(text)


def test_np_governs_only_subdomains_that_do_not_exist():
    record = parse_dmarc("v=DMARC1; p=none; sp=quarantine; np=reject")
    org = dataclasses.replace(record, found_at=DOMAIN)

    assert applied_policy(f"ghost.{DOMAIN}", org, domain_exists=False) == "reject"
    assert applied_policy(f"mail.{DOMAIN}", org, domain_exists=True) == "quarantine"
    assert applied_policy(DOMAIN, org, domain_exists=False) == "none"  # the record's own domain: p=
    assert applied_policy(f"ghost.{DOMAIN}", dataclasses.replace(org, np=None), domain_exists=False) == "quarantine"


def test_names_with_stray_dots_are_normalised_before_alignment():
    assert domain_name("..Mail..ACME.example.") == f"mail.{DOMAIN}"
    record = DmarcRecord(p="reject", adkim="s", found_at=DOMAIN)

    aligned = dmarc_alignment(f".{DOMAIN}.", [f"{DOMAIN}"], None, record)

    assert (aligned.dkim_aligned, aligned.would_be_rejected) == (True, False)
    assert organizational_domain("a..b.acme.example") == DOMAIN


def test_tree_walk_targets_jump_to_seven_labels_then_climb_one_at_a_time():
    assert walk_targets("a.b.c.d.e.f.g.h.i.example") == [
        "a.b.c.d.e.f.g.h.i.example",
        "d.e.f.g.h.i.example",
        "e.f.g.h.i.example",
        "f.g.h.i.example",
        "g.h.i.example",
        "h.i.example",
        "i.example",
        "example",
    ]
    assert walk_targets(f"mail.{DOMAIN}") == [f"mail.{DOMAIN}", DOMAIN, "example"]


def test_tree_walk_takes_the_record_with_the_fewest_labels_as_organizational_domain(zone):
    zone.add(f"_dmarc.team.{DOMAIN}", "TXT", "v=DMARC1; p=quarantine")
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")

    found = lookup_dmarc(f"x.team.{DOMAIN}")

    assert (found.status, found.found_at, found.org_domain, found.record.p) == ("found", DOMAIN, DOMAIN, "reject")


def test_tree_walk_stops_at_psd_n_and_uses_that_domains_policy(zone):
    zone.add(f"_dmarc.team.{DOMAIN}", "TXT", "v=DMARC1; p=quarantine; psd=n")
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")

    found = lookup_dmarc(f"x.team.{DOMAIN}")

    assert (found.found_at, found.org_domain, found.record.p) == (f"team.{DOMAIN}", f"team.{DOMAIN}", "quarantine")
    # psd=n ends the walk: the parent's record is never asked for.
    assert found.checked == (f"_dmarc.x.team.{DOMAIN}", f"_dmarc.team.{DOMAIN}")


def test_under_a_psd_y_suffix_the_name_below_it_is_the_organizational_domain(zone):
    # RFC 9091 / RFC 9989: a public suffix operator's record; its policy applies where the organization has none.
    zone.add("_dmarc.example", "TXT", "v=DMARC1; p=reject; np=reject; psd=y")

    found = lookup_dmarc(f"shop.{DOMAIN}")
    result_policy = applied_policy(f"shop.{DOMAIN}", found.record, domain_exists=False)

    assert (found.status, found.found_at, found.org_domain) == ("found", "example", DOMAIN)
    assert result_policy == "reject"


def test_a_subdomain_with_its_own_record_still_belongs_to_the_parents_organization(zone):
    zone.add(f"_dmarc.mail.{DOMAIN}", "TXT", "v=DMARC1; p=quarantine")
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")

    found = lookup_dmarc(f"mail.{DOMAIN}")

    assert (found.found_at, found.record.p, found.org_domain) == (f"mail.{DOMAIN}", "quarantine", DOMAIN)


def test_dmarc_check_aligns_by_the_walked_organizational_domain(zone, spec):
    # team.acme.example declares itself an organizational domain (psd=n), so mail From it with DKIM d=acme.example
    # does not align in relaxed mode although the public suffix list would say it does.
    zone.add(f"_dmarc.team.{DOMAIN}", "TXT", "v=DMARC1; p=reject; psd=n")
    team = dataclasses.replace(spec, name=f"team.{DOMAIN}", dkim_keys=())

    result = check_dmarc(team, return_path_spf_ok=True)

    assert result.details["org_domain"] == f"team.{DOMAIN}"
    assert result.details["alignment"]["spf_aligned"] is False
    assert result.status is CheckStatus.WRONG


def test_dmarc_pct_does_not_soften_a_rejection():
    record = DmarcRecord(p="quarantine", pct=0, found_at=DOMAIN)

    assert dmarc_alignment(DOMAIN, [], "bounces.postwerk.example", record).would_be_rejected


# --------------------------------------------------------------------------- DNS failures


@pytest.fixture
def fast_timeout(settings):
    settings.POSTWERK_DNS_TIMEOUT = 0.5


def assert_temporary(result):
    assert result.status is CheckStatus.ERROR, result.message
    assert result.details["temporary"] is True


def test_timeouts_are_temporary_errors_never_missing(zone, spec, fast_timeout):
    publish_all(zone, spec)
    zone.drop(DOMAIN)
    zone.drop(spec.dkim_keys[0].record_name(DOMAIN))
    zone.drop(RP_HOST)
    zone.drop(f"_dmarc.{DOMAIN}")

    started = time.monotonic()
    results = by_key(run_checks(spec))
    elapsed = time.monotonic() - started

    for key in ("ownership", "dkim:pw202401", "spf:from", "return_path", "spf:return_path", "dmarc"):
        assert_temporary(results[key])
    assert results["dkim:pwed202401"].status is CheckStatus.OK
    assert elapsed < 10


def test_timeout_inside_an_include_is_temperror(zone, spec, fast_timeout):
    zone.add(DOMAIN, "TXT", "v=spf1 include:slow.acme.example -all")
    zone.drop("slow.acme.example", "TXT")

    result = check_spf(spec)

    assert_temporary(result)
    assert result.details["result"] == "temperror"


def test_servfail_is_a_temporary_error(zone, spec):
    publish_all(zone, spec)
    zone.servfail(spec.dkim_keys[0].record_name(DOMAIN))
    zone.servfail(PLATFORM_INCLUDE)
    zone.servfail(f"_dmarc.{DOMAIN}")

    assert_temporary(check_dkim(spec, spec.dkim_keys[0]))
    spf = check_spf(spec)
    assert_temporary(spf)
    assert spf.details["result"] == "temperror"
    assert_temporary(check_dmarc(spec))


def test_servfail_at_the_organizational_domain_does_not_read_as_missing(zone, spec):
    zone.servfail(f"_dmarc.{DOMAIN}")
    sub = dataclasses.replace(spec, name=f"mail.{DOMAIN}")

    assert_temporary(check_dmarc(sub))


def test_nxdomain_and_nodata_are_missing(zone, spec):
    zone.add(DOMAIN, "A", "127.0.0.5")  # the name exists, without TXT: NODATA

    assert check_ownership(spec).status is CheckStatus.MISSING
    assert check_spf(spec).status is CheckStatus.MISSING
    assert check_dkim(spec, spec.dkim_keys[0]).status is CheckStatus.MISSING  # NXDOMAIN
