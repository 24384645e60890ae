"""Address verification against real loopback MX hosts (aiosmtpd) and the loopback DNS server."""

from __future__ import annotations

import csv
import io
import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_create, organization_get_or_create
from sending.feedback.suppressions import suppression_add
from tests.conftest import add_mx_domain
from tests.servers import SmtpSink
from tests.servers.smtp_sink import _Handler
from tests.worker_process import ROOT, worker_env
from verification import services
from verification.lists import is_disposable, is_free_provider, is_role_account, osa_distance, suggest_domain
from verification.models import ProbeSlot, VerificationJob
from verification.slots import slot_acquire, slot_release

pytestmark = pytest.mark.django_db

USER_UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
GREYLISTED = "451 4.7.1 Greylisted, please try again in 60 seconds"


class ProbeHandler(_Handler):
    """SmtpSink's handler plus what a verification test needs: a mailbox directory (None: a catch-all),
    greylisting, and a record of every MAIL FROM, RCPT TO and DATA."""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        self.sink.mail_froms.append(address)
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        sink, key = self.sink, address.lower()
        sink.rcpts.append(address)
        if sink.hang_on is None and key not in sink.rcpt_replies:
            if sink.greylist and key not in sink.greylisted:
                sink.greylisted.add(key)
                return GREYLISTED
            if sink.mailboxes is not None and key not in sink.mailboxes:
                return USER_UNKNOWN.format(address)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.sink.data_commands += 1
        return await super().handle_DATA(server, session, envelope)


class ProbeSink(SmtpSink):
    def __init__(self, *args: object, mailboxes: set[str] | None = None, greylist: bool = False, **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.mailboxes = {m.lower() for m in mailboxes} if mailboxes is not None else None
        self.greylist = greylist
        self.greylisted: set[str] = set()
        self.mail_froms: list[str] = []
        self.rcpts: list[str] = []
        self.data_commands = 0
        self.open_sessions = 0
        self.peak_sessions = 0

    def start(self) -> ProbeSink:
        super().start()
        assert self._controller is not None
        self._controller.handler = ProbeHandler(self)  # read by the controller's factory for every connection
        return self

    def _register(self, smtp):  # type: ignore[no-untyped-def]
        # Counts concurrent sessions, from accept to connection_lost.
        super()._register(smtp)
        with self._cond:
            self.open_sessions += 1
            self.peak_sessions = max(self.peak_sessions, self.open_sessions)
        forget = smtp.sink_on_lost

        def lost(server):  # type: ignore[no-untyped-def]
            forget(server)
            with self._cond:
                self.open_sessions -= 1

        smtp.sink_on_lost = lost


@pytest.fixture
def probe_mx(mx_port: int) -> Iterator[Callable[..., ProbeSink]]:
    started: list[ProbeSink] = []

    def start(host: str, **kwargs: object) -> ProbeSink:
        sink = ProbeSink(host, mx_port, **kwargs).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture(autouse=True)
def verify_settings(settings) -> Iterator[None]:
    """Short timeouts and a fresh cache per test; aiosmtpd's per-command INFO logging off."""
    settings.POSTWERK_VERIFY_CONNECT_TIMEOUT = 2.0
    settings.POSTWERK_VERIFY_COMMAND_TIMEOUT = 1.0
    settings.POSTWERK_VERIFY_SLOT_WAIT = 20.0
    settings.POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX = 2
    settings.POSTWERK_VERIFY_ADDRESSES_PER_CONNECTION = 20
    settings.POSTWERK_VERIFY_JOB_THREADS = 6
    settings.POSTWERK_VERIFY_HOURLY_LIMIT = 10_000
    settings.POSTWERK_VERIFY_MAIL_FROM = ""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }
    mail_log = logging.getLogger("mail.log")  # thousands of lines for the bulk job otherwise
    level = mail_log.level
    mail_log.setLevel(logging.WARNING)
    yield
    mail_log.setLevel(level)


@pytest.fixture(autouse=True)
def enqueued(monkeypatch) -> list[str]:
    """Job ids handed to Celery: recorded, not published (the tests run jobs themselves)."""
    published: list[str] = []
    monkeypatch.setattr(services, "_enqueue", published.extend)
    return published


@pytest.fixture
def known(zone, probe_mx) -> ProbeSink:
    """known.example: mailboxes jane@ and info@, every other address refused with 550 5.1.1."""
    add_mx_domain(zone, "known.example", "127.0.0.2")
    return probe_mx("127.0.0.2", mailboxes={"jane@known.example", "info@known.example", "用户@known.example"})


def verify(api: APIClient, address: str) -> dict:
    response = api.post("/api/v1/verifications", {"address": address}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


# --- single addresses, one behaviour each ------------------------------------------------------------------------


def test_existing_mailbox_is_deliverable_and_nothing_is_sent(api, known):
    body = verify(api, "Jane@Known.Example")

    assert body["result"] == "deliverable", body
    assert body["reasons"] == ["accepted"]
    assert body["normalized"] == "Jane@known.example"
    checks = body["checks"]
    assert checks["syntax"] == {"valid": True, "error": None, "smtputf8": False}
    assert checks["domain"]["exists"] is True
    assert checks["mx"] == {"kind": "mx", "hosts": ["mx1.known.example"]}
    assert checks["smtp"]["code"] == 250 and checks["smtp"]["mx_host"] == "mx1.known.example"
    assert checks["catch_all"] is False  # the random address was refused
    assert checks["disposable"] is checks["role_account"] is checks["free_provider"] is checks["suppressed"] is False
    # The probe: our verification sender, the address, a random one for catch-all detection; never DATA.
    assert known.mail_froms == ["verify@bounces.postwerk.example"]
    assert known.rcpts[0] == "Jane@known.example"
    assert known.rcpts[1].startswith("pw-verify-") and known.rcpts[1].endswith("@known.example")
    assert known.data_commands == 0 and known.messages == []
    # Stored as a completed job of one.
    job = VerificationJob.objects.get(pk=body["id"])
    assert job.state == VerificationJob.State.COMPLETED and job.results.get().result == "deliverable"


def test_unknown_mailbox_is_undeliverable(api, known):
    body = verify(api, "bob@known.example")
    assert body["result"] == "undeliverable"
    assert body["reasons"] == ["mailbox_not_found"]
    assert (body["checks"]["smtp"]["code"], body["checks"]["smtp"]["enhanced"]) == (550, "5.1.1")


def test_catch_all_domain_makes_an_accepted_address_risky(api, zone, probe_mx):
    add_mx_domain(zone, "catchall.example", "127.0.0.3")
    probe_mx("127.0.0.3")  # accepts every address
    body = verify(api, "whoever@catchall.example")
    assert body["result"] == "risky"
    assert body["reasons"] == ["catch_all"]
    assert body["checks"]["catch_all"] is True


def test_greylisting_is_unknown_and_not_cached(api, zone, probe_mx):
    add_mx_domain(zone, "grey.example", "127.0.0.4")
    sink = probe_mx("127.0.0.4", greylist=True)
    first = verify(api, "jane@grey.example")
    assert first["result"] == "unknown"
    assert first["reasons"] == ["greylisted"]
    assert first["checks"]["smtp"]["code"] == 451
    # A temporary answer is not remembered: asking again probes again, and the greylist now lets it through.
    second = verify(api, "jane@grey.example")
    assert second["result"] == "deliverable"
    assert second["checks"]["smtp"]["cached"] is False
    assert sink.connections == 2


def test_hanging_server_times_out_as_unknown(api, zone, probe_mx):
    add_mx_domain(zone, "slow.example", "127.0.0.5")
    sink = probe_mx("127.0.0.5")
    sink.hang_on = "RCPT"
    started = time.monotonic()
    body = verify(api, "jane@slow.example")
    assert time.monotonic() - started < 4  # one command timeout (1 s), no QUIT waited for
    assert body["result"] == "unknown"
    assert body["reasons"] == ["timeout"]
    assert body["checks"]["smtp"]["stage"] == "lost"


def test_server_rejecting_the_probe_sender_is_unknown_not_undeliverable(api, zone, probe_mx, settings):
    settings.POSTWERK_VERIFY_MAIL_FROM = "probe@verify.postwerk.example"
    add_mx_domain(zone, "strict.example", "127.0.0.6")
    sink = probe_mx("127.0.0.6")
    sink.mail_reply = "550 5.7.1 <probe@verify.postwerk.example>: Sender address rejected: Access denied"
    body = verify(api, "jane@strict.example")
    assert body["result"] == "unknown"
    assert body["reasons"] == ["sender_rejected"]
    assert sink.mail_froms == ["probe@verify.postwerk.example"] and sink.rcpts == []


def test_sender_rejected_at_rcpt_is_unknown_not_undeliverable(api, known):
    # Postfix's default smtpd_delay_reject answers a sender restriction at RCPT TO, with a 5.1.8 status.
    known.rcpt_replies["jane@known.example"] = "553 5.1.8 <probe@x.example>: Sender address rejected: Domain not found"
    body = verify(api, "jane@known.example")
    assert body["result"] == "unknown"
    assert body["reasons"] == ["sender_rejected"]


def test_policy_block_on_rcpt_is_unknown_not_undeliverable(api, known):
    known.rcpt_replies["jane@known.example"] = "550 5.7.1 Client host blocked using zen.spamhaus.org"
    body = verify(api, "jane@known.example")
    assert body["result"] == "unknown"
    assert body["reasons"] == ["policy_blocked"]


def test_full_mailbox_is_risky(api, known):
    known.rcpt_replies["jane@known.example"] = "552 5.2.2 Mailbox full"
    body = verify(api, "jane@known.example")
    assert (body["result"], body["reasons"]) == ("risky", ["mailbox_full"])


def test_null_mx_domain_is_undeliverable_without_a_connection(api, zone):
    zone.add("nullmx.example", "MX", "0 .")
    body = verify(api, "jane@nullmx.example")
    assert body["result"] == "undeliverable"
    assert body["reasons"] == ["null_mx"]
    assert body["checks"]["mx"] == {"kind": "null_mx", "hosts": []}
    assert body["checks"]["smtp"] is None


def test_domain_without_mx_falls_back_to_its_address(api, zone, probe_mx):
    zone.add("amx.example", "A", "127.0.0.7")
    probe_mx("127.0.0.7", mailboxes={"jane@amx.example"})
    body = verify(api, "jane@amx.example")
    assert body["result"] == "deliverable"
    assert body["checks"]["mx"] == {"kind": "implicit", "hosts": ["amx.example"]}


def test_nxdomain_is_undeliverable(api):
    body = verify(api, "jane@nowhere.example")
    assert body["result"] == "undeliverable"
    assert body["reasons"] == ["no_domain"]
    assert body["checks"]["domain"]["exists"] is False
    assert body["checks"]["mx"] is None


def test_unreachable_mx_is_unknown(api, zone):
    add_mx_domain(zone, "down.example", "127.0.0.8")  # nothing listens there
    body = verify(api, "jane@down.example")
    assert (body["result"], body["reasons"]) == ("unknown", ["mx_unreachable"])


def test_disposable_domain_is_risky_and_not_probed(api, zone, probe_mx):
    add_mx_domain(zone, "mailinator.com", "127.0.0.3")
    sink = probe_mx("127.0.0.3")
    body = verify(api, "someone@mailinator.com")
    assert body["result"] == "risky"
    assert body["reasons"] == ["disposable"]
    assert body["checks"]["disposable"] is True
    assert sink.connections == 0


def test_typo_domain_suggests_the_provider(api):
    body = verify(api, "jane.doe@gmial.com")
    assert body["result"] == "undeliverable"  # no such domain in the test DNS
    assert body["checks"]["did_you_mean"] == "jane.doe@gmail.com"


def test_invalid_syntax_is_undeliverable_without_any_lookup(api, zone):
    zone.queries.clear()
    body = verify(api, "jane at example dot com")
    assert body["result"] == "undeliverable"
    assert body["reasons"] == ["invalid_syntax"]
    assert body["checks"]["syntax"]["valid"] is False and body["checks"]["syntax"]["error"]
    assert body["normalized"] is None and body["checks"]["domain"] is None
    assert zone.queries == []


def test_internationalised_addresses(api, zone, known, probe_mx):
    # RFC 6531: a UTF-8 local part needs SMTPUTF8 in MAIL FROM; an IDN domain is looked up as A-labels.
    body = verify(api, "用户@known.example")
    assert body["result"] == "deliverable", body
    assert body["checks"]["syntax"]["smtputf8"] is True
    add_mx_domain(zone, "xn--bcher-kva.example", "127.0.0.3")
    probe_mx("127.0.0.3", mailboxes={"jane@xn--bcher-kva.example"})
    body = verify(api, "jane@bücher.example")
    assert body["result"] == "deliverable", body
    assert body["normalized"] == "jane@bücher.example"
    assert body["checks"]["domain"]["name"] == "xn--bcher-kva.example"


def test_role_free_and_suppressed_flags(api, known, organization):
    assert verify(api, "info@known.example")["checks"]["role_account"] is True
    assert verify(api, "someone@gmail.com")["checks"]["free_provider"] is True
    suppression_add(organization_id=organization.pk, address="jane@known.example", reason="manual")
    body = verify(api, "jane@known.example")
    # It exists, but Postwerk will not send to it: risky, saying why.
    assert body["result"] == "risky"
    assert body["reasons"] == ["accepted", "suppressed"]
    assert body["checks"]["suppressed"] is True


def test_answers_are_cached_per_address_and_catch_all_per_domain(api, known):
    verify(api, "jane@known.example")
    assert known.connections == 1 and len(known.rcpts) == 2  # the address and the random one
    again = verify(api, "jane@known.example")
    assert again["result"] == "deliverable" and again["checks"]["smtp"]["cached"] is True
    assert known.connections == 1
    # Another address of the domain: a new probe, but the domain's catch-all answer is remembered.
    other = verify(api, "info@known.example")
    assert other["result"] == "deliverable" and other["checks"]["catch_all"] is False
    assert known.connections == 2 and known.rcpts[2:] == ["info@known.example"]


# --- the API: validation, quota, scope ---------------------------------------------------------------------------


def test_request_must_name_one_address_or_a_list(api, settings):
    settings.POSTWERK_VERIFY_MAX_ADDRESSES = 5
    for body in ({}, {"address": "a@b.example", "addresses": ["a@b.example"]}, {"addresses": []}):
        response = api.post("/api/v1/verifications", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"] == "invalid"
    response = api.post("/api/v1/verifications", {"addresses": ["a@b.example"] * 6}, format="json")
    assert response.status_code == 400
    assert "addresses" in response.json()["fields"]


def test_hourly_quota_per_organization(api, settings):
    settings.POSTWERK_VERIFY_HOURLY_LIMIT = 3
    response = api.post("/api/v1/verifications", {"addresses": ["a@x.example", "b@x.example"]}, format="json")
    assert response.status_code == 202
    assert verify(api, "c@x.example")["result"] == "undeliverable"
    response = api.post("/api/v1/verifications", {"address": "d@x.example"}, format="json")
    assert response.status_code == 429
    assert response.json()["error"] == "throttled"
    assert int(response["Retry-After"]) > 0
    # Another organization has its own budget.
    other, _ = organization_get_or_create(name="Other")
    _, secret = api_key_create(organization=other, name="other")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.post("/api/v1/verifications", {"address": "d@x.example"}, format="json").status_code == 200


def test_jobs_are_scoped_to_their_organization(api, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/verifications", {"addresses": ["a@x.example"]}, format="json")
    job_id = response.json()["id"]
    assert response["Location"] == f"/api/v1/verifications/{job_id}"
    assert enqueued == [job_id]  # a worker was asked to run it
    other, _ = organization_get_or_create(name="Other")
    _, secret = api_key_create(organization=other, name="other")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for suffix in ("", "/results.json", "/results.csv"):
        response = client.get(f"/api/v1/verifications/{job_id}{suffix}")
        assert response.status_code == 404, suffix
        assert response.json()["error"] == "not_found"
    assert APIClient().get(f"/api/v1/verifications/{job_id}").status_code == 401


def test_job_progress_and_results_while_queued_and_after(api, known):
    addresses = ["jane@known.example", "bob@known.example", "jane@known.example", "bad address"]
    response = api.post("/api/v1/verifications", {"addresses": addresses}, format="json")
    assert response.status_code == 202
    job_id = response.json()["id"]
    status = api.get(f"/api/v1/verifications/{job_id}").json()
    assert (status["status"], status["total"], status["checked"], status["progress"]) == ("queued", 4, 0, 0.0)
    assert [r["result"] for r in api.get(f"/api/v1/verifications/{job_id}/results.json").json()["results"]] == [
        None
    ] * 4

    assert services.verification_job_run(job_id) == 4
    assert services.verification_job_run(job_id) == 0  # a duplicate task finds it done

    status = api.get(f"/api/v1/verifications/{job_id}").json()
    assert (status["status"], status["checked"], status["progress"]) == ("completed", 4, 1.0)
    assert status["counts"] == {"deliverable": 2, "undeliverable": 2, "risky": 0, "unknown": 0}
    results = api.get(f"/api/v1/verifications/{job_id}/results.json").json()["results"]
    assert [r["result"] for r in results] == ["deliverable", "undeliverable", "deliverable", "undeliverable"]
    assert [r["address"] for r in results] == addresses
    # The repeated address was probed once.
    assert known.rcpts.count("jane@known.example") == 1
    response = api.get(f"/api/v1/verifications/{job_id}/results.csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["result"] for r in rows] == ["deliverable", "undeliverable", "deliverable", "undeliverable"]
    assert rows[1]["reasons"] == "mailbox_not_found" and rows[1]["smtp_code"] == "550"
    assert rows[3]["syntax_valid"] == "false"


def test_sweep_requeues_lost_and_abandoned_jobs(api, settings, enqueued):
    settings.POSTWERK_VERIFY_JOB_LEASE = 60
    job_id = api.post("/api/v1/verifications", {"addresses": ["a@x.example"]}, format="json").json()["id"]
    enqueued.clear()
    assert services.verification_sweep()["enqueued"] == 0  # just enqueued
    long_ago = timezone.now() - timedelta(seconds=120)
    VerificationJob.objects.filter(pk=job_id).update(state="running", heartbeat_at=long_ago, enqueued_at=long_ago)
    assert services.verification_sweep()["enqueued"] == 1
    assert enqueued == [job_id]
    assert services.verification_job_run(job_id) == 1  # the dead worker's job is taken over
    settings.POSTWERK_VERIFY_RESULT_RETENTION = 0
    assert services.verification_sweep()["deleted"] >= 1


# --- bulk and the per-MX connection limit ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_bulk_job_of_1000_addresses_respects_the_connection_limit(api, zone, probe_mx):
    add_mx_domain(zone, "bulk.example", "127.0.0.8")
    bulk = probe_mx("127.0.0.8", mailboxes={f"user{n}@bulk.example" for n in range(0, 800, 2)})
    add_mx_domain(zone, "wild.example", "127.0.0.9")
    wild = probe_mx("127.0.0.9")
    add_mx_domain(zone, "mailinator.com", "127.0.0.9")
    addresses = (
        [f"user{n}@bulk.example" for n in range(800)]  # 400 exist, 400 do not
        + [f"x{n}@wild.example" for n in range(100)]  # catch-all: risky
        + [f"y{n}@nowhere.example" for n in range(50)]  # NXDOMAIN
        + [f"not an address {n}" for n in range(30)]
        + [f"z{n}@mailinator.com" for n in range(20)]  # disposable: risky, not probed
    )
    response = api.post("/api/v1/verifications", {"addresses": addresses}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    started = time.monotonic()
    assert services.verification_job_run(job_id) == 1000
    elapsed = time.monotonic() - started

    status = api.get(f"/api/v1/verifications/{job_id}").json()
    assert status["status"] == "completed" and status["checked"] == 1000
    assert status["counts"] == {"deliverable": 400, "undeliverable": 480, "risky": 120, "unknown": 0}
    # Six threads, but never more than two connections to one MX host; and they were used in parallel.
    assert bulk.peak_sessions == 2, bulk.peak_sessions
    assert wild.peak_sessions <= 2
    assert bulk.connections == 40  # 800 addresses, 20 per connection
    assert bulk.data_commands == wild.data_commands == 0
    assert ProbeSlot.objects.exclude(holder="").count() == 0  # every slot released
    assert elapsed < 30, elapsed
    csv_body = api.get(f"/api/v1/verifications/{job_id}/results.csv").content.decode()
    assert len(csv_body.strip().splitlines()) == 1001


@pytest.mark.django_db(transaction=True)
def test_connection_slots_are_shared_across_processes():
    # A second process takes both slots of an MX host; this one must wait until it lets them go.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import django, time
                django.setup()
                from verification.slots import slot_acquire, slot_release
                held = [slot_acquire("mx.shared.example", wait=5) for _ in range(2)]
                assert all(held)
                print("held", flush=True)
                time.sleep(1.5)
                for slot in held:
                    slot_release(slot)
                """
            ),
        ],
        cwd=ROOT,
        env=worker_env(DJANGO_SETTINGS_MODULE="config.settings", POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX="2"),
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        assert slot_acquire("mx.shared.example", wait=0) is None
        started = time.monotonic()
        slot = slot_acquire("mx.shared.example", wait=10)
        assert slot is not None and time.monotonic() - started > 0.5
        slot_release(slot)
    finally:
        assert child.wait(timeout=20) == 0


def test_expired_slot_lease_is_taken_over(settings):
    settings.POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX = 1
    settings.POSTWERK_VERIFY_SLOT_LEASE = 0  # a holder that died: its lease is already over
    first = slot_acquire("mx.dead.example", wait=0)
    assert first is not None
    second = slot_acquire("mx.dead.example", wait=0)
    assert second is not None and second.token != first.token
    slot_release(first)  # the old holder's late release does not free the new holder's slot
    assert ProbeSlot.objects.get(host="mx.dead.example").holder == second.token


@pytest.mark.django_db(transaction=True)
def test_threads_of_one_process_share_the_limit(settings):
    settings.POSTWERK_VERIFY_MAX_CONNECTIONS_PER_MX = 2
    held = [slot_acquire("mx.local.example", wait=0) for _ in range(2)]
    assert all(held) and slot_acquire("mx.local.example", wait=0) is None

    def release_later() -> None:
        time.sleep(0.3)
        slot_release(held[0])
        connection.close()

    threading.Thread(target=release_later).start()
    started = time.monotonic()
    assert slot_acquire("mx.local.example", wait=5) is not None
    assert time.monotonic() - started < 2


# --- pure parts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "suggestion"),
    [
        ("gmial.com", "gmail.com"),
        ("gmai.com", "gmail.com"),
        ("gmail.con", "gmail.com"),
        ("hotmial.com", "hotmail.com"),
        ("outlok.com", "outlook.com"),
        ("yahooo.com", "yahoo.com"),
        ("gmail.com", None),
        ("gmx.de", None),
        ("acme-industries.example", None),
    ],
)
def test_did_you_mean(domain, suggestion):
    assert suggest_domain(domain) == suggestion


def test_name_checks():
    assert is_role_account("postmaster") and is_role_account("Support+EU") and not is_role_account("jane")
    assert is_disposable("mailinator.com") and is_disposable("inbox.mailinator.com") and not is_disposable("gmail.com")
    assert is_free_provider("gmail.com") and not is_free_provider("mailinator.com")
    assert not is_free_provider("acme.example")
    assert osa_distance("gmial", "gmail", 2) == 1 and osa_distance("abc", "xyz", 1) == 2
