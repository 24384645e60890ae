"""Soak: a steady stream through the API and SMTP submission for a long time (default 10 minutes) at about half
of the measured maximum, watching for memory growth, latency drift and errors (issue #11).

```sh
.venv/bin/python bench/soak.py                                   # 600 s, 73 msg/s API + 19 msg/s SMTP
.venv/bin/python bench/soak.py --duration 60 --json > soak.json  # a short run
make bench-soak BENCH_ARGS="--duration 120"
```

The backend is bench/send_api.py's (bench database flushed, Redis flushed, loopback DNS, counting sink, Celery
workers) with gunicorn and `manage.py smtpserver` in front. Messages are paced on a schedule (message i due at
start + i / rate), not sent as fast as possible. Every `--sample` seconds the RSS of every started process and
the queue depth are recorded; at the end, accept → delivered latency (from the database) is split per minute of
acceptance. Pass/fail: no errors, every message delivered, no process group's RSS grown by more than
`--rss-bound` MB between the end of the first minute and the end of the run, p99 of the last minute at most
`--p99-drift` times the first minute's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import smtplib
import ssl
import sys
import textwrap
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, send_api, smtp_ingest  # noqa: E402
from bench.harness import SENDER_DOMAIN, SMTP, WEB, add_common_args, check_common_args, log, percentiles  # noqa: E402

# The last measured maxima on PostgreSQL + Redis (bench/README.md): ~146 delivered/s via the API, ~38/s via SMTP.
API_MAX, SMTP_MAX = 146.0, 38.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=600, help="seconds of steady load")
    p.add_argument("--api-rate", type=float, default=API_MAX / 2, help="messages/s through POST /api/v1/messages")
    p.add_argument("--smtp-rate", type=float, default=SMTP_MAX / 2, help="messages/s through SMTP submission")
    p.add_argument("--api-clients", type=int, default=4, help="HTTP client threads")
    p.add_argument("--sample", type=float, default=10, help="seconds between RSS and queue samples")
    p.add_argument("--rss-bound", type=float, default=64, help="MB a process group may grow after the first minute")
    p.add_argument("--p99-drift", type=float, default=3.0, help="last minute p99 at most this x the first's")
    add_common_args(p, fronts=(WEB, SMTP), broker_url="redis://127.0.0.1:6379/11")
    p.set_defaults(sessions=4)  # one thread each, kept open for the whole run
    args = p.parse_args(argv)
    check_common_args(p, args, "api_clients")
    if args.duration <= 0 or args.api_rate < 0 or args.smtp_rate < 0 or args.api_rate + args.smtp_rate <= 0:
        p.error("--duration must be positive and at least one rate above 0")
    args.messages, args.batch, args.clients = 1, 0, args.api_clients  # what send_api.Bench expects
    return args


class Soak(send_api.Bench):
    """send_api.Bench's gunicorn front plus smtp_ingest.Bench's smtpserver, paced for a long run."""

    start_smtpserver = smtp_ingest.Bench.start_smtpserver
    wait_smtp = smtp_ingest.Bench.wait_smtp

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.smtp_port, self.cafile, self.username, self.password = 0, "", "", ""
        self.errors: list[str] = []
        self.sent = {"api": 0, "smtp": 0}
        self.late = 0  # messages sent more than a second after their slot: the machine did not keep the rate
        self.samples: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def setup(self) -> None:
        self.setup_backend()
        self.env["POSTWERK_SMTP_INBOUND"] = "off"  # no bounces come back from the sink; port 25 may be taken
        web, smtp = self.start_web(), self.start_smtpserver()
        workers = self.start_workers()
        provisioned = self.provision("--smtp-credential", "soak")
        self.api_key = provisioned["api_key"]
        self.username, self.password = provisioned["smtp_username"], provisioned["smtp_password"]
        deadline = time.monotonic() + 90
        self.wait_web(web, deadline)
        self.wait_smtp(smtp, deadline)
        self.wait_workers(workers, deadline)

    def _error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _paced(self, rate: float, slot: int, slots: int, t0: float):  # type: ignore[no-untyped-def]
        """This thread's share of the schedule: message i (i % slots == slot) is due at t0 + i / rate."""
        i = slot
        while not self._stop.is_set():
            due = t0 + i / rate
            # Stop at the end of the period even when behind: a machine that cannot keep the rate shows as
            # fewer messages sent (and `late`), not as a run that goes on for ever.
            if due - t0 >= self.args.duration or time.monotonic() - t0 >= self.args.duration:
                return
            if time.monotonic() - due > 1.0:
                with self._lock:
                    self.late += 1
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield i
            i += slots

    def api_client(self, slot: int, t0: float) -> None:
        body = send_api.text_body(self.args.body_size)
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=60)
        for i in self._paced(self.args.api_rate, slot, self.args.api_clients, t0):
            d = i % self.args.domains
            payload = json.dumps(
                {"from": f"soak@{SENDER_DOMAIN}", "to": [f"a{i}@d{d}.{SENDER_DOMAIN}"], "subject": "soak", "text": body}
            ).encode()
            try:
                conn.request("POST", "/api/v1/messages", body=payload, headers=self.headers())
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status != 202:
                    self._error(f"api {i}: HTTP {resp.status} {answer[:200]!r}")
                    continue
            except (OSError, http.client.HTTPException) as exc:
                self._error(f"api {i}: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=60)
                continue
            with self._lock:
                self.sent["api"] += 1
        conn.close()

    def smtp_client(self, slot: int, t0: float) -> None:
        context = ssl.create_default_context(cafile=self.cafile)
        # RFC 5321 §4.5.3.1.6: at most 998 octets a line; the API's body is one long line.
        body = "\r\n".join(textwrap.wrap(send_api.text_body(self.args.body_size), 76)).encode() + b"\r\n"
        client = None
        for i in self._paced(self.args.smtp_rate, slot, self.args.sessions, t0):
            rcpt = f"s{i}@d{i % self.args.domains}.{SENDER_DOMAIN}"
            message = f"From: soak@{SENDER_DOMAIN}\r\nTo: {rcpt}\r\nSubject: soak {i}\r\n\r\n".encode() + body
            try:
                if client is None:
                    client = smtplib.SMTP(smtp_ingest.SMTP_HOST, self.smtp_port, timeout=60)
                    client.starttls(context=context)
                    client.login(self.username, self.password)
                client.sendmail(f"soak@{SENDER_DOMAIN}", [rcpt], message)
            except (OSError, smtplib.SMTPException) as exc:
                self._error(f"smtp {i}: {exc!r}")
                client = None
                continue
            with self._lock:
                self.sent["smtp"] += 1
        if client is not None:
            client.quit()

    def sample_loop(self, t0: float) -> None:
        while not self._stop.wait(self.args.sample):
            table = harness._process_table()
            rss: dict[str, int] = {}
            for group, root in self.monitor.roots:
                rss[group] = sum(harness._rss_kb(pid) for pid in harness._descendants(root, table))
            with self.db_connect() as conn:
                states = self.recipient_states(conn)
            self.samples.append(
                {"t": round(time.monotonic() - t0, 1), "rss_mb": {g: round(kb / 1024, 1) for g, kb in rss.items()}}
                | {"waiting": states.get("queued", 0) + states.get("sending", 0), "deferred": states.get("deferred", 0)}
            )
            log(f"t={self.samples[-1]['t']:.0f}s sent={self.sent} waiting={self.samples[-1]['waiting']}")

    def latencies(self) -> tuple[list[tuple[float, float]], dict[str, int]]:
        with self.db_connect() as conn:
            states = self.recipient_states(conn)
            if self.embedded:
                sql = (
                    "SELECT (julianday(created_at) - 2440587.5) * 86400, "
                    "(julianday(delivered_at) - julianday(created_at)) * 86400 "
                    "FROM sending_recipient WHERE delivered_at IS NOT NULL"
                )
            else:
                sql = (
                    "SELECT extract(epoch FROM created_at), extract(epoch FROM delivered_at - created_at) "
                    "FROM sending_recipient WHERE delivered_at IS NOT NULL"
                )
            rows = [(float(a), float(b)) for a, b in conn.execute(sql).fetchall()]
        return rows, states

    def run(self) -> dict:
        a = self.args
        self.setup()
        self.warmup()
        expected = round(a.api_rate * a.duration) + round(a.smtp_rate * a.duration)
        log(f"soak: {a.duration:.0f} s at {a.api_rate:g}/s API + {a.smtp_rate:g}/s SMTP (~{expected} messages)")
        t0 = time.monotonic() + 0.5
        threads = [
            threading.Thread(target=self.api_client, args=(k, t0), daemon=True)
            for k in range(a.api_clients if a.api_rate else 0)
        ]
        threads += [
            threading.Thread(target=self.smtp_client, args=(k, t0), daemon=True)
            for k in range(a.sessions if a.smtp_rate else 0)
        ]
        sampler = threading.Thread(target=self.sample_loop, args=(t0,), daemon=True)
        for t in [*threads, sampler]:
            t.start()
        for t in threads:
            t.join(a.duration + 120)
        sent_at = time.monotonic()
        total = sum(self.sent.values())
        while time.monotonic() - sent_at < 120:  # the tail: let the workers finish what was accepted
            with self.db_connect() as conn:
                if self.recipient_states(conn).get("delivered", 0) >= total:
                    break
            time.sleep(1)
        self._stop.set()
        sampler.join(a.sample + 30)
        result = self.report(total)
        self.failed = not result["check"]["ok"]
        return result

    def report(self, total: int) -> dict:  # type: ignore[override]
        a = self.args
        rows, states = self.latencies()
        start = min((c for c, _ in rows), default=0.0)
        minutes: dict[int, list[float]] = {}
        for created, latency in rows:
            minutes.setdefault(int((created - start) // 60), []).append(latency)
        per_minute = [
            {"minute": m + 1, "delivered": len(v), **{k: round(x, 3) for k, x in percentiles(v, (50, 99)).items()}}
            for m, v in sorted(minutes.items())
        ]
        growth = {}
        first = next((s for s in self.samples if s["t"] >= 60), self.samples[0] if self.samples else None)
        if first and self.samples:
            last = self.samples[-1]
            growth = {g: round(last["rss_mb"].get(g, 0) - mb, 1) for g, mb in first["rss_mb"].items()}
        drift = None
        # Whole minutes of the steady load only: a trailing minute holds just the stragglers of the last second.
        full = [m for m in per_minute if m["minute"] <= max(1, int(a.duration // 60))]
        if len(full) >= 2 and full[0].get("p99"):
            drift = round(full[-1]["p99"] / full[0]["p99"], 2)
        checks = {
            "no_errors": not self.errors,
            "all_delivered": states.get("delivered", 0) == total and sum(states.values()) == total,
            "rss_within_bound": all(v <= a.rss_bound for v in growth.values()),
            "latency_stable": drift is None or drift <= a.p99_drift,
        }
        return {
            "config": {
                "duration_s": a.duration,
                "api_rate": a.api_rate,
                "smtp_rate": a.smtp_rate,
                "workers": a.workers,
                "concurrency": a.concurrency,
                "pool": a.pool,
                **harness.backend_config(a),
                "cpus": os.cpu_count(),
            },
            "sent": self.sent,
            "late": self.late,
            "states": states,
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "latency_s_per_minute": per_minute,
            "latency_s_overall": {k: round(v, 3) for k, v in percentiles([x for _, x in rows]).items()},
            "p99_drift": drift,
            "rss_growth_mb_after_first_minute": growth,
            "samples": self.samples,
            "checks": checks,
            "check": {"ok": all(checks.values())},  # what harness.run_main reads for the exit status
        }


def print_report(r: dict, out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    say = harness.sayer(out)
    c = r["config"]
    say(f"Soak: {c['duration_s']:.0f} s, {c['api_rate']:g}/s API + {c['smtp_rate']:g}/s SMTP, {c['database']}")
    say(f"sent {r['sent']} ({r['late']} late), states {r['states']}, errors {r['errors']} {r['error_samples'][:2]}")
    say("minute  delivered  p50 s   p99 s")
    for m in r["latency_s_per_minute"]:
        say(f"{m['minute']:>6}  {m['delivered']:>9}  {m.get('p50', 0):>6.2f}  {m.get('p99', 0):>6.2f}")
    say(f"overall {r['latency_s_overall']}, p99 last/first minute: {r['p99_drift']}")
    say("RSS MB (first sample after 60 s -> last), growth:")
    for group, grown in r["rss_growth_mb_after_first_minute"].items():
        say(f"  {group:<24} {r['samples'][-1]['rss_mb'].get(group, 0):>8.1f}  {grown:+.1f}")
    say(f"checks: {r['checks']} -> {'OK' if r['check']['ok'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    return harness.run_main(Soak(parse_args(argv)), print_report)


if __name__ == "__main__":
    sys.exit(main())
