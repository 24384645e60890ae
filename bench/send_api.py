#!/usr/bin/env python
"""End-to-end send benchmark: HTTP API in, SMTP out.

Starts everything it needs (bench database schema, a loopback DNS server, a counting SMTP sink in its own
process, gunicorn, W Celery workers), provisions an organization and API key, sends N messages with K client
threads, waits until the sink has received all of them and the database says `delivered`, and prints
throughput, latency, peak RSS and CPU per process. Everything it started is stopped on exit, Ctrl-C or error.

    .venv/bin/python bench/send_api.py                      # defaults: 2000 messages, batches of 100
    .venv/bin/python bench/send_api.py --messages 200       # quick sanity check
    .venv/bin/python bench/send_api.py --batch 0 --pool prefork --json

PostgreSQL and Redis must already run; the bench database is created if missing and flushed every run,
and the Redis database number in --broker-url is flushed too.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    PYTHON,
    SENDER_DOMAIN,
    WEB,
    BaseBench,
    Load,
    add_common_args,
    backend_config,
    check_common_args,
    delivery_rows,
    latency_row,
    log,
    percentiles,
    print_resources,
    print_rows,
    run_main,
    sayer,
    tail,
    text_body,
)

# --- options ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark Postwerk end to end: API in, SMTP out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--messages", type=int, default=2000, help="messages to send (one recipient each)")
    p.add_argument("--clients", type=int, default=4, help="concurrent HTTP client threads")
    p.add_argument("--batch", type=int, default=100, help="messages per batch request; 0 = single endpoint")
    p.add_argument(
        "--template",
        action="store_true",
        help="send with a stored template (layout, CSS to inline, a loop, a partial; text part generated from the "
        "HTML) and a model per message, instead of subject and text",
    )
    add_common_args(p, fronts=(WEB,), broker_url="redis://127.0.0.1:6379/13")
    args = p.parse_args(argv)
    check_common_args(p, args, "messages", "clients")
    if not 0 <= args.batch <= 500:
        p.error("--batch must be 0..500 (the API accepts at most 500 per batch)")
    return args


# --- the benchmark ------------------------------------------------------------------------------------


def build_requests(args: argparse.Namespace) -> list[tuple[str, bytes, int]]:
    body = text_body(args.body_size)

    def message(i: int) -> dict:
        if getattr(args, "template", False):  # benches built on this one (stream_priority) have no --template
            return {
                "from": f"Bench Shop <orders@{SENDER_DOMAIN}>",
                "to": [f"user{i}@d{i % args.domains}.{SENDER_DOMAIN}"],
                "template": "bench-shipped",
                "model": template_model(i),
            }
        return {
            "from": f"Bench Shop <orders@{SENDER_DOMAIN}>",
            "to": [f"user{i}@d{i % args.domains}.{SENDER_DOMAIN}"],
            "subject": f"Your order #{100000 + i} has shipped",
            "text": body,
        }

    out = []
    if args.batch == 0:
        for i in range(args.messages):
            out.append(("/api/v1/messages", json.dumps(message(i)).encode(), 1))
    else:
        for start in range(0, args.messages, args.batch):
            items = [message(i) for i in range(start, min(args.messages, start + args.batch))]
            out.append(("/api/v1/messages/batch", json.dumps({"messages": items}).encode(), len(items)))
    return out


# --template: a shipping notice as a shop would keep it, about 2 KB of HTML once rendered.
BENCH_LAYOUT = {
    "alias": "bench-layout",
    "kind": "layout",
    "name": "Bench layout",
    "html": (
        "<html><head><style>body { font-family: sans-serif; } .brand { color: #224488; font-weight: bold; } "
        "td { padding: 4px 8px; border-bottom: 1px solid #ddd; } .footer { color: #888; font-size: 12px; }"
        '</style></head><body><table width="600"><tr><td class="brand">Bench Shop</td></tr>'
        '<tr><td>{{ content }}</td></tr><tr><td class="footer">Bench Shop, 1 Main Street. '
        "You get this mail because you ordered at bench.example.</td></tr></table></body></html>"
    ),
}
BENCH_PARTIAL = {
    "alias": "bench-help",
    "kind": "partial",
    "name": "Help",
    "html": "<p>Questions? Reply to this mail.</p>",
}
BENCH_TEMPLATE = {
    "alias": "bench-shipped",
    "name": "Shipped",
    "layout": "bench-layout",
    "subject": "Your order #{{ order }} has shipped",
    "html": (
        "<h1>Hello {{ name }},</h1><p>Your order <b>#{{ order }}</b> is on its way.</p>"
        "<table>{% for item in items %}<tr><td>{{ item.title }}</td><td>{{ item.qty }}</td>"
        "<td>{{ item.price }}</td></tr>{% endfor %}</table>"
        "<p>Track it at <a href=\"{{ tracking_url }}\">{{ tracking_url }}</a>.</p>{% include 'bench-help' %}"
    ),
}


def template_model(i: int) -> dict:
    return {
        "name": f"Customer {i}",
        "order": 100000 + i,
        "tracking_url": f"https://track.bench.example/p/{i:08d}",
        "items": [{"title": f"Item {k}", "qty": k + 1, "price": f"{(k + 1) * 9.5:.2f} EUR"} for k in range(5)],
    }


@dataclass
class ClientResult:
    latencies: list[tuple[float, int]] = field(default_factory=list)  # (seconds, messages in request)
    first_start: float | None = None
    last_ok: float | None = None
    accepted: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0


class Bench(BaseBench):
    """API in: gunicorn in front of the shared backend (harness.BaseBench)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.web_port = 0
        self.api_key = ""
        self.accepted_live = 0
        self._accepted_lock = threading.Lock()

    # ..... setup

    def start_web(self) -> subprocess.Popen:
        log_path = self.tmp / "gunicorn.log"
        proc = self.procs.start(
            "gunicorn",
            [
                PYTHON, "-m", "gunicorn", "config.wsgi:application",
                "--bind", "127.0.0.1:0",
                "--workers", str(self.args.web_workers),
                "--threads", str(self.args.web_threads),
                "--worker-class", "gthread",
                "--log-level", "info",
                "--error-logfile", "-",
                "--timeout", "120",
            ],
            env=self.env,
            log_path=log_path,
            stop_signal=signal.SIGQUIT,
        )  # fmt: skip
        self.monitor.add_root("gunicorn", proc.pid)
        return proc

    def wait_web(self, proc: subprocess.Popen, deadline: float) -> None:
        log_path = self.tmp / "gunicorn.log"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{tail(log_path)}")
            if not self.web_port and log_path.exists():
                for line in log_path.read_text(errors="replace").splitlines():
                    if "Listening at: http://" in line:
                        self.web_port = int(line.split("Listening at: http://", 1)[1].split()[0].rsplit(":", 1)[1])
            if self.web_port:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=5)
                    conn.request("GET", "/healthz")
                    resp = conn.getresponse()
                    resp.read()
                    conn.close()
                    if resp.status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn was not healthy in time:\n{tail(log_path)}")

    def setup(self) -> None:
        a = self.args
        self.setup_backend()
        web = self.start_web()
        workers = self.start_workers()
        self.api_key = self.provision()["api_key"]
        deadline = time.monotonic() + 90
        self.wait_web(web, deadline)
        self.wait_workers(workers, deadline)
        if getattr(a, "template", False):
            self.create_templates()
        log(
            f"gunicorn on 127.0.0.1:{self.web_port} ({a.web_workers}x{a.web_threads}), "
            f"{a.workers} celery worker(s) -P {a.pool} -c {a.concurrency}"
        )

    def create_templates(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=30)
        for body in (BENCH_LAYOUT, BENCH_PARTIAL, BENCH_TEMPLATE):
            conn.request("POST", "/api/v1/templates", body=json.dumps(body).encode(), headers=self.headers())
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status != 201:
                raise RuntimeError(f"creating template {body['alias']}: HTTP {resp.status} {payload[:300]!r}")
        conn.close()

    # ..... load

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    def warmup(self) -> None:
        """Requests that run auth, DRF and validation (400: no recipient) in every gunicorn thread."""
        body = json.dumps({"from": f"x@{SENDER_DOMAIN}", "text": "warm-up"}).encode()

        def one() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=30)
            for path in ("/api/v1/messages", "/api/v1/messages/batch") * 3:
                payload = body if path.endswith("messages") else json.dumps({"messages": [json.loads(body)]}).encode()
                conn.request("POST", path, body=payload, headers=self.headers())
                conn.getresponse().read()
            conn.close()

        n = self.args.web_workers * self.args.web_threads * 2
        threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    def client(self, requests_: list[tuple[str, bytes, int]], counter: itertools.count, result: ClientResult) -> None:
        headers = self.headers()
        conn: http.client.HTTPConnection | None = None
        while True:
            i = next(counter)
            if i >= len(requests_):
                break
            path, body, n = requests_[i]
            for attempt in (1, 2):
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=300)
                started = time.monotonic()
                if result.first_start is None:
                    result.first_start = started
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                    # A keep-alive connection the server closed: reconnect once. (The request may have been
                    # processed; duplicates would show up in the sink and the final check.)
                    conn.close()
                    conn = None
                    result.reconnects += 1
                    if attempt == 2:
                        result.errors.append(f"request {i}: {exc!r}")
                    continue
                except Exception as exc:
                    conn.close()
                    conn = None
                    result.errors.append(f"request {i}: {exc!r}")
                    break
                ended = time.monotonic()
                if 200 <= resp.status < 300:
                    accepted = n
                    if n and path.endswith("/batch"):
                        data = json.loads(payload)
                        accepted = int(data.get("accepted", 0))
                        if data.get("rejected"):
                            bad = [r for r in data.get("results", []) if r.get("status") != 202][:1]
                            result.errors.append(f"request {i}: {data['rejected']} rejected, e.g. {bad}")
                    result.accepted += accepted
                    result.rejected += n - accepted
                    result.latencies.append((ended - started, n))
                    result.last_ok = ended
                    with self._accepted_lock:
                        self.accepted_live += accepted
                else:
                    result.rejected += n
                    result.errors.append(f"request {i}: HTTP {resp.status} {payload[:300]!r}")
                break
        if conn is not None:
            conn.close()

    def run(self) -> dict:
        self.setup()
        requests_ = build_requests(self.args)
        if not self.args.no_warmup:
            self.warmup()
        self.check_quiet()
        load = self.load(requests_)
        return self.report(load, requests_)

    def load(self, requests_: list[tuple[str, bytes, int]]) -> Load:
        """Send everything, then wait for the sink and the database; return raw measurements."""
        a = self.args
        load = self.start_load()
        counter = itertools.count()
        load.clients = [ClientResult() for _ in range(a.clients)]
        threads = [
            threading.Thread(target=self.client, args=(requests_, counter, r), name=f"client-{k}", daemon=True)
            for k, r in enumerate(load.clients)
        ]
        profilers = self.start_profilers() if a.profile else []
        log(f"sending {a.messages} messages in {len(requests_)} requests with {a.clients} client(s)")
        load.t0 = time.monotonic()
        for t in threads:
            t.start()
        expected = self.wait_delivery(
            load,
            sending=lambda: any(t.is_alive() for t in threads),
            accepted_live=lambda: self.accepted_live,
            accepted_total=lambda: sum(r.accepted for r in load.clients),
            front="API",
        )
        load.profile = self.stop_profilers(profilers) if profilers else {}
        self.finish_load(load, expected)
        return load

    def report(self, load: Load, requests_: list[tuple[str, bytes, int]]) -> dict:
        a, results = self.args, load.clients
        first_start = min((r.first_start for r in results if r.first_start is not None), default=load.t0)
        last_ok = max((r.last_ok for r in results if r.last_ok is not None), default=first_start)
        accepted = sum(r.accepted for r in results)
        errors = [e for r in results for e in r.errors]
        req_lat = [lat for r in results for lat, _ in r.latencies]
        msg_lat = [lat / n for r in results for lat, n in r.latencies for _ in range(n)]
        api_seconds = last_ok - first_start
        delivery = self.delivery(load, first_start, last_ok, "tail_after_api_s")
        delivered = delivery["delivered"]
        resources = self.resources(load, first_start, delivered)
        states = load.states
        check_ok = (
            not errors
            and accepted == a.messages
            and delivered == a.messages
            and states.get("delivered", 0) == a.messages
            and sum(states.values()) == a.messages
            and delivery["sink"]["recipients"] == a.messages
        )
        return {
            "config": {
                "messages": a.messages,
                "domains": a.domains,
                "batch": a.batch,
                "clients": a.clients,
                "workers": a.workers,
                "concurrency": a.concurrency,
                "pool": a.pool,
                "web": f"{a.web_workers}x{a.web_threads} gthread",
                "body_bytes": a.body_size,
                "template": getattr(a, "template", False),
                "settings": a.settings,
                **backend_config(a),
                "cpus": os.cpu_count(),
                "requests": len(requests_),
            },
            "api": {
                "accepted": accepted,
                "requests_ok": len(req_lat),
                "errors": len(errors),
                "error_samples": errors[:5],
                "reconnects": sum(r.reconnects for r in results),
                "seconds": round(api_seconds, 3),
                "accepted_per_s": round(accepted / api_seconds, 1) if api_seconds > 0 else None,
                "latency_ms_per_request": {k: round(v * 1000, 2) for k, v in percentiles(req_lat).items()},
                "latency_ms_per_message": {k: round(v * 1000, 3) for k, v in percentiles(msg_lat).items()},
            },
            **self.sections(load, delivery, check_ok, resources),
        }


# --- output -------------------------------------------------------------------------------------------


def print_report(r: dict, out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    say = sayer(out)
    c, api = r["config"], r["api"]
    mode = f"batch {c['batch']}" if c["batch"] else "single-message endpoint"
    if c.get("template"):
        mode += ", template + model per message"
    say()
    say(
        f"Postwerk send benchmark: {c['messages']} messages x {c['body_bytes']} B to {c['domains']} domains, "
        f"{mode} ({c['requests']} requests), {c['clients']} clients"
    )
    say(
        f"  web {c['web']} | celery {c['workers']} worker(s) -P {c['pool']} -c {c['concurrency']} | "
        f"{c['database']}, {c['broker']} | {c['cpus']} CPUs"
        + (f" | settings {c['settings']}" if c["settings"] != "config.settings" else "")
    )
    say()
    errors = f"reconnects {api['reconnects']}"
    if api["error_samples"]:
        errors += f"; e.g. {api['error_samples'][0]}"
    d = delivery_rows(r, front="API", start="first request")
    rows = [
        (
            "API accepted/s",
            f"{api['accepted_per_s']}",
            f"{api['accepted']} in {api['seconds']} s (first request -> last 2xx)",
        ),
        d["delivered"],
        d["tail"],
        d["db"],
        latency_row("API latency / request", api["latency_ms_per_request"]),
        latency_row("API latency / message", api["latency_ms_per_message"], " (request latency / its messages)"),
        d["lag"],
        ("API errors", f"{api['errors']}", errors),
        d["sink"],
        d["postgres"],
        d["redis"],
    ]
    print_rows(rows, say)
    print_resources(r, say, want=c["messages"])


# --- entry point --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    return run_main(Bench(parse_args(argv)), print_report)


if __name__ == "__main__":
    sys.exit(main())
