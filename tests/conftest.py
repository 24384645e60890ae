"""Fixtures: a real DNS server and real SMTP servers on loopback, and the platform pointed at them."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create, organization_get_or_create
from mail import dns as postwerk_dns
from sending.delivery.tls_policies import clear_caches as tls_policy_clear_caches
from sending.domains.service import dns_records, domain_get_or_create
from sending.domains.verification import domain_verify
from sending.models import DkimKey, Domain, Recipient, RecipientState
from tests.servers import DnsServer, SmtpSink

SENDER_DOMAIN = "acme.example"
MX_HOSTS = [f"127.0.0.{n}" for n in range(2, 10)]


def _free_port_on_all(hosts: list[str]) -> int:
    """One port free on every loopback MX address: delivery uses a single outbound port for every host."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        ok = True
        for host in hosts[1:]:
            with socket.socket() as other:
                try:
                    other.bind((host, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no common free port on the loopback MX addresses")


@pytest.fixture(scope="session", autouse=True)
def no_stray_database_sessions(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Before pytest-django drops the PostgreSQL test database: end the sessions that background threads of this
    process still hold (the web publisher's and the delivery group commit's threads keep their connections), or
    DROP DATABASE fails with "is being accessed by other users" and the run ends in an error."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.fixture(scope="session")
def mx_port() -> int:
    return _free_port_on_all(MX_HOSTS)


@pytest.fixture(autouse=True)
def postwerk_network(settings, dns_server: DnsServer, mx_port: int) -> Iterator[DnsServer]:
    """Every test resolves through the loopback DNS server and delivers to loopback MX hosts."""
    settings.POSTWERK_DNS_SERVERS = [dns_server.address]
    settings.POSTWERK_DNS_TIMEOUT = 2.0
    settings.POSTWERK_SMTP_DELIVERY_PORT = mx_port
    settings.POSTWERK_SMTP_CONNECT_TIMEOUT = 3.0
    settings.POSTWERK_SMTP_COMMAND_TIMEOUT = 5.0
    settings.POSTWERK_HOSTNAME = "mta.postwerk.example"
    settings.POSTWERK_RETURN_PATH_DOMAIN = "bounces.postwerk.example"
    # The names derived from those two when settings load (from the test machine's name, often `localhost`).
    settings.POSTWERK_INBOUND_MX_HOSTS = ["bounces.postwerk.example"]
    settings.POSTWERK_SPF_INCLUDE = "_spf.bounces.postwerk.example"
    settings.POSTWERK_DMARC_RUA = ""
    settings.POSTWERK_TRACKING_HOST = "mta.postwerk.example"
    # Delivery markers live in the cache, outside the rolled-back database: each test gets its own.
    settings.POSTWERK_DELIVERY_PENDING_NAMESPACE = uuid.uuid4().hex
    postwerk_dns.clear_caches()
    tls_policy_clear_caches()
    dns_server.clear()
    yield dns_server
    dns_server.clear()
    postwerk_dns.clear_caches()
    tls_policy_clear_caches()


@pytest.fixture
def mx(mx_port: int) -> Iterator[Callable[..., SmtpSink]]:
    """Start a recipient MX on a loopback address: mx("127.0.0.2")."""
    started: list[SmtpSink] = []

    def start(host: str, **kwargs: object) -> SmtpSink:
        sink = SmtpSink(host, mx_port, **kwargs).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def zone(dns_server: DnsServer) -> DnsServer:
    return dns_server


def add_mx_domain(zone: DnsServer, domain: str, *hosts: str) -> None:
    """MX records for `domain`, one per host address, in preference order."""
    for i, host in enumerate(hosts):
        name = f"mx{i + 1}.{domain}"
        zone.add(domain, "MX", f"{(i + 1) * 10} {name}.")
        zone.add(name, "A", host)


@pytest.fixture
def organization(db):
    org, _ = organization_get_or_create(name="Acme")
    return org


@pytest.fixture
def domain(organization, postwerk_network: DnsServer) -> Domain:
    """acme.example with every record Postwerk asks for published in the test DNS, and verified."""
    return verified_domain(postwerk_network, organization, SENDER_DOMAIN)


def verified_domain(zone: DnsServer, organization, name: str, **kwargs: object) -> Domain:  # type: ignore[no-untyped-def]
    domain, _ = domain_get_or_create(organization=organization, name=name, **kwargs)  # type: ignore[arg-type]
    publish_records(zone, domain)
    domain_verify(domain=domain)
    domain.refresh_from_db()
    assert domain.verified_at is not None, list(domain.dns_checks.values_list("name", "status", "message"))
    return domain


def publish_records(
    zone: DnsServer, domain: Domain, purposes: tuple[str, ...] = ("ownership", "dkim", "return_path")
) -> None:
    """Publish what Postwerk tells the owner to publish (all of it, or the named purposes)."""
    for record in dns_records(domain):
        if record["purpose"] in purposes:
            zone.add(record["name"], record["type"], record["value"])


@pytest.fixture
def api_key(organization, domain) -> str:
    _, secret = api_key_create(organization=organization, name="test")
    return secret


@pytest.fixture
def api(api_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


def publish_dkim(zone: DnsServer, domain: Domain) -> None:
    for key in domain.dkim_keys.exclude(state=DkimKey.State.RETIRED):
        zone.add(key.record_name, "TXT", key.record_value)


def deliver_queued() -> int:
    """Run the delivery stage in this process for everything queued, as a worker would."""
    from sending.delivery.deliver import deliver

    ids = [str(pk) for pk in Recipient.objects.filter(state=RecipientState.QUEUED).values_list("id", flat=True)]
    return deliver(ids) if ids else 0


@pytest.fixture
def dest(zone: DnsServer, mx: Callable[..., SmtpSink]) -> SmtpSink:
    """The recipients' domain dest.example, its MX a sink on 127.0.0.2 (the compatible APIs' tests)."""
    sink = mx("127.0.0.2")
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    return sink


@pytest.fixture
def welcome(organization):  # type: ignore[no-untyped-def]
    """A strict `welcome` template: subject and text from the model's name and team."""
    from sending.templating.service import template_create

    return template_create(
        organization=organization,
        alias="welcome",
        name="Welcome",
        subject="Welcome, {{ name }}",
        text="Hello {{ name }}, from the {{ team }} team.",
        strict=True,
    )
