"""The platform's own DNS names (issue #28 item 3): no record is recommended on a name that is not a real
domain, and every record Postwerk does recommend passes its own checks once published."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sending.domains.platform_names import domain_name_problem
from sending.domains.service import dns_records, domain_get_or_create
from sending.domains.verification import domain_verify
from sending.models import Domain
from tests.conftest import verified_domain

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
SENDING_IP = "127.0.0.1"


@pytest.mark.parametrize(
    "name",
    ["mta.postwerk.example", "bounces.example.com", "Mail.Example.COM.", "xn--bcher-kva.example", "bücher.example"],
)
def test_real_domain_names_pass_the_rule(name):
    assert domain_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "localhost",
        "vm",
        "mail.localhost",
        "host.localdomain",
        "printer.local",
        "ip-10-0-0-5.ec2.internal",
        "router.home.arpa",
        "127.0.0.1",
        "::1",
        "[::1]",
        "10.0.0.300",
        "-bad.example",
        "bad-.example",
        "a..example",
        "under_score.example",
        "",
    ],
)
def test_names_that_are_not_public_domains_are_refused(name):
    assert domain_name_problem(name) is not None


def _machine_named_localhost(settings) -> None:
    """What settings derive on a fresh machine whose name is `localhost` when nothing is set."""
    settings.POSTWERK_HOSTNAME = "localhost"
    settings.POSTWERK_RETURN_PATH_DOMAIN = "localhost"
    settings.POSTWERK_INBOUND_MX_HOSTS = ["localhost"]
    settings.POSTWERK_SPF_INCLUDE = "_spf.localhost"
    settings.POSTWERK_TRACKING_HOST = "localhost"


def test_api_gives_no_records_on_localhost_and_names_the_settings(api, domain, settings):
    _machine_named_localhost(settings)
    return_path_ok = Domain.objects.get(pk=domain.pk).return_path_ok

    body = api.get(f"/api/v1/domains/{domain.pk}").json()

    assert body["dns_records"] == []
    assert "POSTWERK_HOSTNAME" in body["dns_records_unavailable"]
    assert "POSTWERK_RETURN_PATH_DOMAIN is 'localhost'" in body["dns_records_unavailable"]
    assert "POSTWERK_SPF_INCLUDE is '_spf.localhost'" in body["dns_records_unavailable"]
    # Checking now cannot say what the platform-facing records must be: an error, which changes nothing.
    checks = {c["name"]: c for c in api.post(f"/api/v1/domains/{domain.pk}/verify").json()["checks"]}
    assert checks["return_path"]["status"] == "error"
    assert "POSTWERK_HOSTNAME" in checks["return_path"]["message"]
    assert "localhost" not in checks["return_path"]["message"].split("Set POSTWERK_HOSTNAME")[1]
    assert checks["ownership"]["status"] == "ok"
    assert Domain.objects.get(pk=domain.pk).return_path_ok == return_path_ok
    tracking = api.get(f"/api/v1/domains/{domain.pk}/tracking").json()
    assert tracking["record"] is None
    assert "POSTWERK_TRACKING_HOST" in tracking["record_unavailable"]


def test_api_lists_records_once_the_names_are_real(api, domain, settings):
    body = api.get(f"/api/v1/domains/{domain.pk}").json()

    assert body["dns_records_unavailable"] is None
    assert {r["purpose"] for r in body["dns_records"]} >= {"ownership", "dkim", "return_path", "spf"}


def _fresh_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This test run's environment without any Postwerk or database setting: a fresh machine's defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTWERK_", "DATABASE_", "CELERY_"))}
    env.pop("SECRET_KEY", None)
    env.update(POSTWERK_DATA_DIR=str(tmp_path), **extra)
    return env


def test_provision_refuses_to_print_records_on_localhost(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "provision", "--org", "Acme", "--domain", "acme.example", "--json"],
        cwd=ROOT,
        env=_fresh_environment(tmp_path, POSTWERK_HOSTNAME="localhost"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert "CommandError: Postwerk cannot recommend DNS records" in result.stderr
    assert "POSTWERK_RETURN_PATH_DOMAIN is 'localhost'" in result.stderr
    assert "Set POSTWERK_HOSTNAME to this platform's public host name" in result.stderr


def test_startup_check_warns_about_localhost(tmp_path):
    """`make run` migrates (which runs the system checks) and platform/dev-run prints this check's warnings."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--tag", "postwerk"],
        cwd=ROOT,
        env=_fresh_environment(tmp_path, POSTWERK_HOSTNAME="localhost"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "(postwerk.W001) Postwerk cannot recommend DNS records" in result.stderr
    assert "(postwerk.W002) POSTWERK_TRACKING_HOST is 'localhost'" in result.stderr
    quiet = subprocess.run(
        [sys.executable, "manage.py", "check", "--tag", "postwerk"],
        cwd=ROOT,
        env=_fresh_environment(tmp_path, POSTWERK_HOSTNAME="mta.postwerk.example"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "postwerk.W00" not in quiet.stderr, quiet.stderr


# --------------------------------------------------------------------------- never recommend what you reject


def publish_platform(zone, settings) -> None:
    """The operator's own records, which the README asks for: the SPF include and the return-path domain."""
    include = settings.POSTWERK_SPF_INCLUDE
    zone.add(include, "TXT", f"v=spf1 ip4:{SENDING_IP} -all")
    zone.add(settings.POSTWERK_RETURN_PATH_DOMAIN, "TXT", f"v=spf1 include:{include} -all")
    zone.add(settings.POSTWERK_RETURN_PATH_DOMAIN, "MX", f"10 {settings.POSTWERK_INBOUND_MX_HOSTS[0]}.")


@pytest.mark.parametrize(
    ("name", "options", "rua"),
    [
        ("acme.example", {}, ""),
        ("mail.acme.example", {"ed25519": True, "return_path_subdomain": "bounce"}, ""),
        ("shop.example.co.uk", {}, ""),
        ("acme.example", {}, "mailto:dmarc@reports.postwerk.example"),
    ],
)
def test_every_recommended_record_passes_postwerks_own_checks(zone, organization, settings, name, options, rua):
    settings.POSTWERK_SENDING_IPS = [SENDING_IP]
    settings.POSTWERK_DMARC_RUA = rua
    publish_platform(zone, settings)
    domain, _ = domain_get_or_create(organization=organization, name=name, **options)

    records = dns_records(domain)
    for record in records:  # the owner's records and the operator's, as the list says
        zone.add(record["name"], record["type"], record["value"])
    checks = domain_verify(domain=domain)

    assert {c.name: (c.status, c.message) for c in checks} == {c.name: ("ok", c.message) for c in checks}
    expected = {"ownership", "return_path", "spf:from", "spf:return_path", "dmarc"}
    expected |= {f"dkim:{key.selector}" for key in domain.dkim_keys.all()}
    if rua:  # reports to another organizational domain need its authorisation (RFC 7489 §7.1)
        expected.add("dmarc_report")
        assert [r["publisher"] for r in records if r["purpose"] == "dmarc_report"] == ["operator"]
    assert {c.name for c in checks} == expected
    dmarc = next(r for r in records if r["purpose"] == "dmarc")
    assert dmarc["value"] == f"v=DMARC1; p=none; rua={rua or f'mailto:dmarc-reports@{domain.return_path_host}'}"


def test_recommended_records_of_a_verified_domain_keep_passing(zone, organization, settings):
    settings.POSTWERK_SENDING_IPS = [SENDING_IP]
    publish_platform(zone, settings)
    domain = verified_domain(zone, organization, "acme.example")

    for record in dns_records(domain):
        if record["purpose"] in ("spf", "dmarc"):
            zone.add(record["name"], record["type"], record["value"])
    assert [c.name for c in domain_verify(domain=domain) if c.status != "ok"] == []
