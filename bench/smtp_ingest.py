#!/usr/bin/env python
"""End-to-end SMTP ingestion benchmark: SMTP submission (STARTTLS + AUTH) in, SMTP out.

Starts the same backend as send_api.py (bench database, Redis broker, loopback DNS, counting SMTP sink,
W Celery workers) with `manage.py smtpserver` in front instead of gunicorn, provisions an SMTP credential,
and drives S concurrent client sessions from P driver processes (threads of smtplib sessions in each).
Every session does EHLO, STARTTLS, EHLO, AUTH PLAIN, then M messages back to back (MAIL, RCPT..., DATA; no
RSET, like Postfix's `smtp-source -s S -m N` with `-d`), then QUIT, and the next session starts until N
messages have been submitted. It waits until the sink has every recipient and the database says
`delivered`, and prints throughput, DATA latency, peak RSS and CPU per process group, the driver's own too.

    .venv/bin/python bench/smtp_ingest.py                    # 2000 messages, 20 sessions x 10 messages
    .venv/bin/python bench/smtp_ingest.py --messages 200     # quick sanity check
    .venv/bin/python bench/smtp_ingest.py --per-session 0 --recipients 3 --json
    .venv/bin/python bench/smtp_ingest.py --driver smtp-source --domains 20 --sink smtp-sink

`--driver smtp-source` drives it with Postfix's smtp-source instead (bench/mta.py: one process per recipient
domain, plain SMTP, no AUTH): the server then trusts 127.0.0.0/8 as the bench credential
(POSTWERK_SMTP_TRUSTED_NETWORKS). PostgreSQL and Redis must already run (or --embedded); the bench database is
created if missing and flushed every run, and the Redis database number in --broker-url is flushed too.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import smtplib
import socket
import ssl
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, mta  # noqa: E402
from bench import sink as sinkmod  # noqa: E402
from bench.harness import CLK_TCK, DRIVER, SENDER_DOMAIN, BaseBench, Load  # noqa: E402

SMTP_HOST = "127.0.0.1"
CLIENTS = "bench driver clients"  # monitor group of the client processes (the driver's own load)
MAX_RECIPIENTS = 50  # the server's default POSTWERK_MAX_RECIPIENTS

# --- options ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark Postwerk end to end: SMTP submission in, SMTP out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--messages", type=int, default=2000, help="messages to submit (smtp-source -m)")
    p.add_argument(
        "--per-session",
        type=int,
        default=10,
        help="messages per session, then QUIT and a new session; 0 = one session per slot for everything",
    )
    p.add_argument("--recipients", type=int, default=1, help="recipients per message (smtp-source -r)")
    p.add_argument(
        "--driver-procs", type=int, default=0, help="client processes, sessions split over them (0 = one per CPU)"
    )
    p.add_argument(
        "--driver",
        choices=["python", "smtp-source"],
        default="python",
        help="python: smtplib sessions with STARTTLS + AUTH; smtp-source: Postfix's, plain SMTP from a trusted "
        "network, one process per domain, each session sending all its messages (-d; --per-session 1: one each)",
    )
    # --sessions (smtp-source -s with --driver smtp-source) and --smtp-processes: the smtpserver front's options.
    harness.add_common_args(p, fronts=(harness.SMTP,), broker_url="redis://127.0.0.1:6379/12")
    args = p.parse_args(argv)
    harness.check_common_args(p, args, "messages", "recipients")
    if args.per_session < 0 or args.driver_procs < 0:
        p.error("--per-session and --driver-procs must be 0 or more")
    if args.recipients > MAX_RECIPIENTS:
        p.error(f"--recipients: the server takes at most {MAX_RECIPIENTS} per message (POSTWERK_MAX_RECIPIENTS)")
    if args.driver == "smtp-source":
        if args.sessions < args.domains:
            p.error("--driver smtp-source: --sessions must be at least --domains (one smtp-source per domain)")
        args.driver_procs = args.domains
        if args.per_session != 1:
            args.per_session = 0  # -d: every session sends all its messages
    if args.per_session == 0:
        args.per_session = math.ceil(args.messages / args.sessions)
    args.driver_procs = min(args.sessions, args.driver_procs or os.cpu_count() or 1)
    return args


# --- the client processes -----------------------------------------------------------------------------


@dataclass
class ClientConf:
    """What a client process needs (pickled to it)."""

    host: str
    port: int
    cafile: str
    username: str
    password: str
    messages: int
    per_session: int
    recipients: int
    domains: int
    body_size: int
    timeout: float = 120.0


@dataclass
class ClientResult:
    """One client process's measurements; monotonic times are system-wide, so comparable with the driver's."""

    data_latencies: list[float] = field(default_factory=list)  # DATA -> 250 after the final dot
    txn_latencies: list[float] = field(default_factory=list)  # MAIL -> 250 to DATA
    setup_latencies: list[float] = field(default_factory=list)  # connect -> 235 to AUTH
    first_start: float | None = None
    last_ok: float | None = None
    accepted: int = 0
    rejected: int = 0
    not_sent: int = 0  # messages of sessions that failed before reaching them
    sessions_ok: int = 0
    sessions_failed: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < 20:
            self.errors.append(text)


def recipients_of(i: int, conf: ClientConf) -> list[str]:
    out = []
    for j in range(conf.recipients):
        n = i * conf.recipients + j
        out.append(f"user{n}@d{n % conf.domains}.{SENDER_DOMAIN}")
    return out


def message_bytes(i: int, rcpts: list[str], body: bytes, run_id: str) -> bytes:
    head = (
        f"From: Bench Shop <orders@{SENDER_DOMAIN}>\r\n"
        f"To: {', '.join(rcpts)}\r\n"
        f"Subject: Your order #{100000 + i} has shipped\r\n"
        f"Date: {formatdate()}\r\n"
        f"Message-ID: <{run_id}.{i}@{SENDER_DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
    )
    return head.encode() + body


def open_session(conf: ClientConf, context: ssl.SSLContext) -> smtplib.SMTP:
    """Connect, EHLO, STARTTLS, EHLO, AUTH PLAIN (initial response); raises on any failure."""
    client = smtplib.SMTP(conf.host, conf.port, local_hostname="client.bench.example", timeout=conf.timeout)
    try:
        client.ehlo()
        client.starttls(context=context)
        client.ehlo()
        client.user, client.password = conf.username, conf.password
        client.auth("PLAIN", client.auth_plain)
    except BaseException:
        client.close()
        raise
    return client


class ClientProcess:
    """The body of one driver process: `threads` smtplib sessions at a time, pulling session numbers from a
    counter shared by every driver process, so the processes finish together."""

    def __init__(self, conf: ClientConf, slot: int, next_session, live) -> None:  # type: ignore[no-untyped-def]
        self.conf = conf
        self.slot = slot
        self.next_session = next_session
        self.live = live  # live[slot]: messages accepted so far by this process, read by the driver
        self.lock = threading.Lock()
        self.result = ClientResult()
        self.context = ssl.create_default_context(cafile=conf.cafile)  # verified: the cert's SAN has 127.0.0.1
        self.body = (harness.text_body(conf.body_size).replace("\n", "\r\n") + "\r\n").encode()
        self.run_id = uuid.uuid4().hex[:12]

    def take_session(self) -> int | None:
        with self.next_session.get_lock():
            s = self.next_session.value
            self.next_session.value = s + 1
        return None if s * self.conf.per_session >= self.conf.messages else s

    def run(self, threads: int) -> ClientResult:
        workers = [threading.Thread(target=self.sessions, name=f"session-{k}") for k in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        return self.result

    def sessions(self) -> None:
        while (s := self.take_session()) is not None:
            first = s * self.conf.per_session
            self.session(first, min(self.conf.messages, first + self.conf.per_session))

    def session(self, first: int, last: int) -> None:
        res, conf = self.result, self.conf
        started = time.monotonic()
        with self.lock:
            res.first_start = started if res.first_start is None else min(res.first_start, started)
        try:
            client = open_session(conf, self.context)
        except (smtplib.SMTPException, OSError) as exc:
            with self.lock:
                res.sessions_failed += 1
                res.not_sent += last - first
                res.error(f"session for messages {first}..{last - 1}: {exc!r}")
            return
        with self.lock:
            res.setup_latencies.append(time.monotonic() - started)
        i = first
        try:
            for i in range(first, last):
                self.transaction(client, i)
        except (smtplib.SMTPException, OSError) as exc:
            with self.lock:
                res.sessions_failed += 1
                res.not_sent += last - i
                res.error(f"message {i}: {exc!r}")
            client.close()
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
        with self.lock:
            res.sessions_ok += 1

    def transaction(self, client: smtplib.SMTP, i: int) -> None:
        """MAIL, RCPT..., DATA in lockstep. A refusal is counted (RSET only then); a broken session raises."""
        rcpts = recipients_of(i, self.conf)
        msg = message_bytes(i, rcpts, self.body, self.run_id)
        res = self.result
        t_mail = time.monotonic()
        refusal = None
        code, reply = client.mail(f"orders@{SENDER_DOMAIN}")
        if code != 250:
            refusal = f"MAIL {code} {reply!r}"
        for rcpt in rcpts if refusal is None else ():
            code, reply = client.rcpt(rcpt)
            if code not in (250, 251):
                refusal = f"RCPT {code} {reply!r}"
                client.rset()
                break
        if refusal is None:
            t_data = time.monotonic()
            try:
                code, reply = client.data(msg)
            except smtplib.SMTPDataError as exc:  # no 354
                code, reply = exc.smtp_code, exc.smtp_error
            if code == 250:
                now = time.monotonic()
                with self.lock:
                    res.accepted += 1
                    res.data_latencies.append(now - t_data)
                    res.txn_latencies.append(now - t_mail)
                    res.last_ok = now if res.last_ok is None else max(res.last_ok, now)
                    self.live[self.slot] = res.accepted
                return
            refusal = f"DATA {code} {reply!r}"
        with self.lock:
            res.rejected += 1
            res.error(f"message {i}: {refusal}")


def client_main(conf, slot, threads, next_session, live, go, stop, conn, parent_pid):  # type: ignore[no-untyped-def]
    """Driver process entry point: get ready, wait for `go`, run the sessions, send the result, then stay
    alive until `stop` so that the driver's CPU snapshot still sees this process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    sinkmod.die_with_parent(parent_pid)
    try:
        proc = ClientProcess(conf, slot, next_session, live)
        conn.send(("ready", None))
        go.wait()
        conn.send(("done", asdict(proc.run(threads))))
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        raise
    stop.wait(600)


# --- the benchmark ------------------------------------------------------------------------------------


class Bench(BaseBench):
    """SMTP in: `manage.py smtpserver` in front of the shared backend (harness.BaseBench)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.smtp_port = 0
        self.server_pid = 0
        self.server_threads: tuple[dict[int, int], dict[int, int]] = ({}, {})  # CPU ticks per thread: before, after
        self.cafile = ""
        self.username = ""
        self.password = ""
        self.clients: list = []  # (process, connection)
        self.stop_event = None
        self.results: dict[int, ClientResult] = {}
        self.fleet: mta.SmtpSourceFleet | None = None  # --driver smtp-source

    # ..... setup

    def start_smtpserver(self) -> object:
        from mail.tls_certs import make_self_signed

        cert, key = make_self_signed(self.tmp / "tls", self.env["POSTWERK_HOSTNAME"])
        self.cafile = cert
        with socket.socket() as s:
            s.bind((SMTP_HOST, 0))
            self.smtp_port = s.getsockname()[1]
        self.env.update(
            POSTWERK_SMTP_SUBMISSION=f"{SMTP_HOST}:{self.smtp_port}",
            POSTWERK_SMTP_SUBMISSIONS="off",
            POSTWERK_SMTP_INBOUND="off",  # no bounces come back from the sink, and port 25 may be taken
            POSTWERK_SMTP_TLS_CERT=cert,
            POSTWERK_SMTP_TLS_KEY=key,
            # Every session comes from 127.0.0.1; leave room for sessions still closing and the warm-up.
            POSTWERK_SMTP_MAX_CONNECTIONS_PER_IP=str(2 * self.args.sessions + 32),
        )
        proc = self.procs.start(
            "smtpserver",
            [
                harness.PYTHON,
                str(harness.ROOT / "manage.py"),
                "smtpserver",
                "--processes",
                str(self.args.smtp_processes),
            ],
            env=self.env,
            log_path=self.tmp / "smtpserver.log",
        )
        self.monitor.add_root("smtpserver", proc.pid)
        self.server_pid = proc.pid
        return proc

    def wait_smtp(self, proc, deadline: float) -> None:  # type: ignore[no-untyped-def]
        log_path = self.tmp / "smtpserver.log"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"smtpserver exited ({proc.returncode}):\n{harness.tail(log_path)}")
            try:
                client = smtplib.SMTP(SMTP_HOST, self.smtp_port, timeout=5)
                client.quit()
                return
            except (OSError, smtplib.SMTPException):
                time.sleep(0.1)
        raise RuntimeError(f"smtpserver did not answer in time:\n{harness.tail(log_path)}")

    def setup(self) -> None:
        a = self.args
        self.setup_backend()
        credential = ("--no-api-key", "--smtp-credential", "bench")
        provisioned = {}
        if a.driver == "smtp-source":
            # smtp-source cannot AUTH: the server submits 127.0.0.0/8 as this credential, so it must exist first.
            provisioned = self.provision(*credential)
            self.env["POSTWERK_SMTP_TRUSTED_NETWORKS"] = f"127.0.0.0/8={provisioned['smtp_username']}"
        server = self.start_smtpserver()
        workers = self.start_workers()
        provisioned = provisioned or self.provision(*credential)
        self.username, self.password = provisioned["smtp_username"], provisioned["smtp_password"]
        deadline = time.monotonic() + 90
        self.wait_smtp(server, deadline)
        self.wait_workers(workers, deadline)
        harness.log(
            f"smtpserver on {SMTP_HOST}:{self.smtp_port} (STARTTLS), "
            f"{a.workers} celery worker(s) -P {a.pool} -c {a.concurrency}"
        )

    def conf(self) -> ClientConf:
        a = self.args
        return ClientConf(
            host=SMTP_HOST,
            port=self.smtp_port,
            cafile=self.cafile,
            username=self.username,
            password=self.password,
            messages=a.messages,
            per_session=a.per_session,
            recipients=a.recipients,
            domains=a.domains,
            body_size=a.body_size,
        )

    def warmup(self) -> None:
        """Sessions up to AUTH and MAIL FROM (then RSET: nothing is submitted), so the server's TLS, AUTH and
        database threads are warm. From this process: the client processes start fresh."""
        conf, context = self.conf(), ssl.create_default_context(cafile=self.cafile)
        errors: list[str] = []

        def one() -> None:
            try:
                client = open_session(conf, context)
                client.mail(f"orders@{SENDER_DOMAIN}")
                client.rset()
                client.quit()
            except (smtplib.SMTPException, OSError) as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=one, daemon=True) for _ in range(min(self.args.sessions, 12))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        if errors:
            raise RuntimeError(f"warm-up session failed: {errors[0]}")

    def start_clients(self):  # type: ignore[no-untyped-def]
        """Start the driver processes and wait until each is ready; returns (go event, live counters)."""
        import multiprocessing

        a = self.args
        ctx = multiprocessing.get_context("spawn")
        next_session, live = ctx.Value("q", 0), ctx.RawArray("d", a.driver_procs)
        go, self.stop_event = ctx.Event(), ctx.Event()
        conf = self.conf()
        for k in range(a.driver_procs):
            threads = a.sessions // a.driver_procs + (k < a.sessions % a.driver_procs)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=client_main,
                args=(conf, k, threads, next_session, live, go, self.stop_event, child, os.getpid()),
                name=f"bench-client-{k + 1}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.clients.append((proc, parent))
            self.monitor.add_root(CLIENTS, proc.pid, label=f"driver client #{k + 1} ({threads} sessions)")
        for _, parent in self.clients:
            if not parent.poll(60):
                raise RuntimeError("a driver client process did not start within 60 s")
            status, value = parent.recv()
            if status != "ready":
                raise RuntimeError(f"a driver client process failed: {value}")
        return go, live

    def collect(self) -> bool:
        """Pick up finished client results; True while any client process is still sending."""
        for k, (proc, conn) in enumerate(self.clients):
            if k in self.results:
                continue
            if conn.poll():
                status, value = conn.recv()
                if status != "done":
                    raise RuntimeError(f"driver client {k + 1} failed: {value}")
                self.results[k] = ClientResult(**value)
            elif not proc.is_alive():
                raise RuntimeError(f"driver client {k + 1} exited ({proc.exitcode}) without a result")
        return len(self.results) < len(self.clients)

    def stop_clients(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()
        for proc, conn in self.clients:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            conn.close()
        self.clients.clear()

    # ..... load

    def run(self) -> dict:
        a = self.args
        self.setup()
        if not a.no_warmup:
            self.warmup()
        if a.driver == "smtp-source":
            fleet = self.fleet = mta.SmtpSourceFleet(
                messages=a.messages,
                sessions=a.sessions,
                domains=a.domains,
                body_size=a.body_size,
                recipients=a.recipients,
                reconnect=a.per_session == 1,
                log_dir=self.tmp,
            )
            self.check_quiet()
            load = self.load(
                lambda: fleet.start(self.procs, self.monitor, SMTP_HOST, self.smtp_port),
                fleet.running,
                fleet.accepted_live,
            )
        else:
            go, live = self.start_clients()
            self.check_quiet()
            load = self.load(go.set, self.collect, lambda: int(sum(live)))
        return self.report(load)

    def client_results(self) -> list[ClientResult]:
        if self.fleet is None:
            return [self.results[k] for k in sorted(self.results)]
        res = self.fleet.result()
        failed = len(res["errors"])
        return [
            ClientResult(
                first_start=res["first_start"],
                last_ok=res["last_ok"],
                accepted=res["accepted"],
                not_sent=self.args.messages - res["accepted"],
                sessions_ok=res["sessions"] if not failed else 0,
                sessions_failed=failed,
                errors=res["errors"],
                error_count=failed,
            )
        ]

    def load(self, release, sending, accepted_live) -> Load:  # type: ignore[no-untyped-def]
        """Release the clients, wait for the sink and the database; return raw measurements. `sending()`:
        whether clients are still at work; `accepted_live()`: messages accepted so far."""
        a = self.args
        load = self.start_load()
        threads_before = harness.thread_ticks(self.server_pid)
        profilers = self.start_profilers() if a.profile else []
        sessions_total = math.ceil(a.messages / a.per_session)
        harness.log(
            f"submitting {a.messages} messages ({a.recipients} recipient(s) each) in {sessions_total} sessions, "
            f"{a.sessions} at a time from {a.driver_procs} driver process(es)"
        )
        load.t0 = time.monotonic()
        release()
        expected = self.wait_delivery(
            load,
            sending=sending,
            accepted_live=accepted_live,
            accepted_total=lambda: a.recipients * accepted_live(),
            front="SMTP",
        )
        load.profile = self.stop_profilers(profilers) if profilers else {}
        self.finish_load(load, expected)  # CPU snapshot included, while the client processes still exist
        self.server_threads = (threads_before, harness.thread_ticks(self.server_pid))
        load.clients = self.client_results()
        self.stop_clients()
        return load

    def report(self, load: Load) -> dict:
        a, results = self.args, load.clients
        first_start = min((r.first_start for r in results if r.first_start is not None), default=load.t0)
        last_ok = max((r.last_ok for r in results if r.last_ok is not None), default=first_start)
        accepted = sum(r.accepted for r in results)
        errors = [e for r in results for e in r.errors]
        error_count = sum(r.error_count for r in results)
        sessions_ok = sum(r.sessions_ok for r in results)
        smtp_seconds = last_ok - first_start
        want = a.messages * a.recipients
        delivery = self.delivery(load, first_start, last_ok, "tail_after_smtp_s")
        delivered = delivery["delivered"]
        resources = self.resources(load, first_start, delivered)
        window, groups = resources[:2]
        driver_s = sum(g["cpu_s"] for g in groups if g["group"] in (DRIVER, CLIENTS, "smtp-source"))
        # The smtpserver's event loop runs in its main thread (tid = pid); database calls run in worker threads.
        before, after = self.server_threads
        busy = {tid: (t - before.get(tid, 0)) / CLK_TCK for tid, t in after.items()}
        loop_s = busy.pop(self.server_pid, 0.0)
        pool_s = sum(busy.values())
        states = load.states
        check_ok = (
            not error_count
            and accepted == a.messages
            and int(load.messages_in_db) == a.messages
            and delivered == want
            and states.get("delivered", 0) == want
            and sum(states.values()) == want
            and delivery["sink"]["recipients"] == want
        )

        def ms(values: list[float]) -> dict[str, float]:
            return {k: round(v * 1000, 2) for k, v in harness.percentiles(values).items()}

        return {
            "config": {
                "messages": a.messages,
                "driver": a.driver,
                **harness.backend_config(a),
                "recipients": a.recipients,
                "domains": a.domains,
                "sessions": a.sessions,
                "per_session": a.per_session,
                "sessions_total": math.ceil(a.messages / a.per_session),
                "driver_procs": a.driver_procs,
                "workers": a.workers,
                "concurrency": a.concurrency,
                "pool": a.pool,
                "body_bytes": a.body_size,
                "settings": a.settings,
                "cpus": os.cpu_count(),
            },
            "smtp": {
                "accepted": accepted,
                "rejected": sum(r.rejected for r in results),
                "not_sent": sum(r.not_sent for r in results),
                "errors": error_count,
                "error_samples": errors[:5],
                "sessions_ok": sessions_ok,
                "sessions_failed": sum(r.sessions_failed for r in results),
                "seconds": round(smtp_seconds, 3),
                "accepted_per_s": round(accepted / smtp_seconds, 1) if smtp_seconds > 0 else None,
                "sessions_per_s": round(sessions_ok / smtp_seconds, 1) if smtp_seconds > 0 else None,
                "latency_ms_data": ms([v for r in results for v in r.data_latencies]),
                "latency_ms_transaction": ms([v for r in results for v in r.txn_latencies]),
                "latency_ms_session_setup": ms([v for r in results for v in r.setup_latencies]),
                "server_loop_cpu_s": round(loop_s, 2),
                "server_loop_cpu_pct_of_one_core": round(100 * loop_s / window, 1),
                "server_threads": len(busy),
                "server_threads_cpu_s": round(pool_s, 2),
                "server_threads_cpu_pct_of_one_core": round(100 * pool_s / window, 1),
                "driver_cpu_s": round(driver_s, 2),
                "driver_cpu_pct_of_one_core": round(100 * driver_s / window, 1),
            },
            **self.sections(load, delivery, check_ok, resources),
        }


# --- output -------------------------------------------------------------------------------------------


def print_report(r: dict, out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    say = harness.sayer(out)
    c, smtp = r["config"], r["smtp"]
    say()
    source = c["driver"] == "smtp-source"
    say(
        f"Postwerk SMTP ingestion benchmark: {c['messages']} messages x {c['body_bytes']} B, "
        f"{c['recipients']} recipient(s) each, to {c['domains']} domains; {c['sessions']} concurrent sessions x "
        f"{c['per_session']} messages ({c['sessions_total']} sessions) from {c['driver_procs']} "
        + ("smtp-source processes" if source else "driver process(es)")
    )
    say(
        "  smtpserver ("
        + ("plain SMTP, trusted network" if source else "STARTTLS + AUTH PLAIN")
        + f") | celery {c['workers']} worker(s) -P {c['pool']} -c {c['concurrency']} | {c['database']}, "
        f"{c['broker']} | {c['cpus']} CPUs"
        + (f" | settings {c['settings']}" if c["settings"] != "config.settings" else "")
    )
    say()
    errors = f"{smtp['rejected']} refused, {smtp['not_sent']} not sent, {smtp['sessions_failed']} sessions failed"
    if smtp["error_samples"]:
        errors += f"; e.g. {smtp['error_samples'][0]}"
    d = harness.delivery_rows(r, front="SMTP", start="first connect", unit="recipient")
    rows = [
        (
            "SMTP accepted/s",
            f"{smtp['accepted_per_s']}",
            f"{smtp['accepted']} in {smtp['seconds']} s (first connect -> last 250 to DATA)",
        ),
        ("SMTP sessions/s", f"{smtp['sessions_per_s']}", f"{smtp['sessions_ok']} sessions completed"),
        d["delivered"],
        d["tail"],
        d["db"],
        harness.latency_row("DATA latency", smtp["latency_ms_data"], " (DATA -> 250 after the final dot)"),
        harness.latency_row("Transaction latency", smtp["latency_ms_transaction"], " (MAIL -> 250 to DATA)"),
        harness.latency_row(
            "Session setup", smtp["latency_ms_session_setup"], " (connect -> 235: EHLO, STARTTLS, AUTH)"
        ),
        d["lag"],
        ("SMTP errors", f"{smtp['errors']}", errors),
        (
            "smtpserver threads",
            f"loop {smtp['server_loop_cpu_pct_of_one_core']}%",
            f"event-loop thread {smtp['server_loop_cpu_s']} s; {smtp['server_threads']} other (DB, AUTH) threads "
            f"{smtp['server_threads_cpu_s']} s = {smtp['server_threads_cpu_pct_of_one_core']}% of one core",
        ),
        (
            "Driver CPU",
            f"{smtp['driver_cpu_s']} s",
            f"{smtp['driver_cpu_pct_of_one_core']}% of one core (main process + {c['driver_procs']} client processes)",
        ),
        d["sink"],
        d["postgres"],
        d["redis"],
    ]
    harness.print_rows(rows, say)
    harness.print_resources(r, say, want=c["messages"] * c["recipients"])


# --- entry point --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    return harness.run_main(Bench(parse_args(argv)), print_report)


if __name__ == "__main__":
    sys.exit(main())
