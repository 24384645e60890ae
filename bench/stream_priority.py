#!/usr/bin/env python
"""Transactional mail behind a broadcast backlog (issue #23): does a password reset wait for a newsletter?

Starts the usual backend (bench.harness: database, broker, loopback DNS, counting sink, gunicorn) and two Celery
worker pools, as the README recommends: one on the transactional queues (`delivery-high,delivery,default`), one on
the broadcast queues (`delivery-broadcast-high,delivery-broadcast`), all on the same machine. Then:

1. idle: `--transactional` messages, one request each, at `--rate` per second, on the transactional stream;
2. loaded: `--broadcast` messages (20,000 by default) submitted in batches of 500 on a broadcast stream, all of them
   queued before the broadcast pool starts; then the broadcast pool starts on that backlog and the same
   transactional load as in 1 runs beside it.

and reports accept -> delivered (Recipient.delivered_at - created_at) of the transactional messages in each phase
(p50/p90/p99/max), the broadcast backlog (queued or sending) when the transactional load started and ended, and
how long the broadcast took to drain. The claim under test: the loaded p99 stays within 2x of the idle p99.

    .venv/bin/python bench/stream_priority.py                              # 20,000 broadcast, 100 transactional
    .venv/bin/python bench/stream_priority.py --broadcast 2000 --transactional 40   # quick sanity check

POSTWERK_OVERLOAD_QUEUE_DEPTH is set to 0 for the run: the point is a large backlog, which the overload guard
(default 20,000 waiting recipients) would otherwise refuse.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    PYTHON,
    SENDER_DOMAIN,
    WEB,
    add_common_args,
    log,
    percentiles,
    run_main,
    text_body,
)
from bench.send_api import Bench as ApiBench  # noqa: E402

POOLS = {
    "transactional": "delivery-high,delivery,default",
    "broadcast": "delivery-broadcast-high,delivery-broadcast",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--broadcast", type=int, default=20_000, help="broadcast messages queued in the loaded phase")
    p.add_argument("--transactional", type=int, default=100, help="transactional messages per phase")
    p.add_argument("--rate", type=float, default=5.0, help="transactional messages per second")
    p.add_argument(
        "--max-ratio", type=float, default=2.0, help="loaded p99 / idle p99 that passes (0: report only, the CI smoke)"
    )
    add_common_args(p, fronts=(WEB,), broker_url="redis://127.0.0.1:6379/13")
    args = p.parse_args(argv)
    args.messages, args.batch, args.clients = args.transactional, 1, 1
    return args


class Bench(ApiBench):
    def base_env(self) -> dict[str, str]:
        env = super().base_env()
        env["POSTWERK_OVERLOAD_QUEUE_DEPTH"] = "0"
        return env

    def start_workers(self) -> list[subprocess.Popen]:
        """The transactional pool only: the broadcast pool starts once the broadcast backlog is queued
        (start_broadcast_pool), so the loaded phase begins with all of it waiting."""
        self.pools = [self.start_pool(1, "transactional")]
        return self.pools

    def start_broadcast_pool(self) -> None:
        self.pools.append(self.start_pool(2, "broadcast"))
        self.wait_workers(self.pools, time.monotonic() + 120)

    def start_pool(self, i: int, pool: str) -> subprocess.Popen:
        queues = POOLS[pool]
        proc = self.procs.start(
            f"celery {pool}",
            [
                PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", queues,
                "-P", self.args.pool, "-c", str(self.args.concurrency), "-n", f"bench{i}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", self.args.worker_loglevel,
            ],
            env=self.env,
            log_path=self.tmp / f"celery-{i}.log",
            stop_signal=signal.SIGQUIT,
        )  # fmt: skip
        self.monitor.add_root(f"celery {pool}", proc.pid)
        return proc

    def post(self, conn: http.client.HTTPConnection, path: str, payload: object) -> dict:
        conn.request("POST", path, body=json.dumps(payload).encode(), headers=self.headers())
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
        if response.status >= 300:
            raise RuntimeError(f"{path}: HTTP {response.status} {body}")
        return body

    def message(self, i: int, tag: str, **extra: object) -> dict:
        return {
            "from": f"Bench Shop <orders@{SENDER_DOMAIN}>",
            "to": [f"{tag}{i}@d{i % self.args.domains}.{SENDER_DOMAIN}"],
            "subject": f"{tag} {i}",
            "text": self.body,
            "tags": [tag],
            **extra,
        }

    def transactional(self, tag: str) -> list[str]:
        """`--transactional` single sends at `--rate`; returns the message ids."""
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=120)
        ids, interval, start = [], 1 / self.args.rate, time.monotonic()
        for i in range(self.args.transactional):
            time.sleep(max(0.0, start + i * interval - time.monotonic()))
            ids.append(self.post(conn, "/api/v1/messages", self.message(i, tag))["id"])
        conn.close()
        return ids

    def broadcast(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=300)
        for start in range(0, self.args.broadcast, 500):
            items = [
                self.message(i, "news", stream="news") for i in range(start, min(self.args.broadcast, start + 500))
            ]
            answer = self.post(conn, "/api/v1/messages/batch", {"messages": items})
            if answer["rejected"]:
                raise RuntimeError(f"broadcast batch refused: {answer['results'][:1]}")
        conn.close()

    def query(self, sql: str, params: list) -> list[tuple]:
        """`sql` with `?` placeholders, on PostgreSQL or the embedded SQLite."""
        with self.db_connect() as conn:
            if not self.embedded:
                sql = sql.replace("?", "%s")
            return list(conn.execute(sql, params).fetchall())

    def latencies(self, ids: list[str]) -> list[float]:
        """accept -> delivered of these messages' delivered recipients, in seconds."""
        keys = ids if not self.embedded else [i.replace("-", "") for i in ids]  # SQLite stores uuids as hex
        rows = self.query(
            f"SELECT created_at, delivered_at FROM sending_recipient WHERE state = 'delivered'"  # noqa: S608
            f" AND message_id IN ({', '.join('?' * len(keys))})",
            keys,
        )
        return [(_when(delivered) - _when(created)).total_seconds() for created, delivered in rows]

    def backlog(self) -> int:
        return self.query(
            "SELECT count(*) FROM sending_recipient"
            " WHERE lane IN ('broadcast', 'broadcast-high') AND state IN ('queued', 'sending')",
            [],
        )[0][0]

    def wait_delivered(self, ids: list[str], deadline: float) -> list[float]:
        while time.monotonic() < deadline:
            done = self.latencies(ids)
            if len(done) == len(ids):
                return done
            time.sleep(0.5)
        raise RuntimeError(f"transactional mail not delivered in time ({len(self.latencies(ids))}/{len(ids)})")

    def run(self) -> dict:
        self.setup()
        self.body = text_body(self.args.body_size)
        self.warmup()
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=60)
        self.post(conn, "/api/v1/streams", {"name": "news", "kind": "broadcast"})
        conn.close()
        log(f"idle: {self.args.transactional} transactional messages at {self.args.rate}/s")
        idle = self.wait_delivered(self.transactional("idle"), time.monotonic() + 600)

        log(f"loaded: {self.args.broadcast} broadcast messages queued, then the broadcast workers and the same load")
        started = time.monotonic()
        self.broadcast()
        submitted = time.monotonic() - started
        self.start_broadcast_pool()
        backlog_before = self.backlog()
        loaded = self.wait_delivered(self.transactional("loaded"), time.monotonic() + 1200)
        backlog_after = self.backlog()
        while (
            self.backlog() or self.query("SELECT count(*) FROM sending_recipient WHERE state <> 'delivered'", [])[0][0]
        ):
            if time.monotonic() - started > 3600:
                raise RuntimeError("the broadcast did not drain within an hour")
            time.sleep(1)
        drained = time.monotonic() - started
        p_idle = {k: round(v * 1000, 1) for k, v in percentiles(idle, (50, 90, 99, 100)).items()}
        p_loaded = {k: round(v * 1000, 1) for k, v in percentiles(loaded, (50, 90, 99, 100)).items()}
        ratio = p_loaded["p99"] / p_idle["p99"] if p_idle["p99"] else None
        self.failed = False
        return {
            "config": {k: getattr(self.args, k) for k in ("broadcast", "transactional", "rate", "concurrency", "pool")},
            "idle_ms": p_idle,
            "loaded_ms": p_loaded,
            "p99_ratio": round(ratio, 2) if ratio else None,
            "within_2x": ratio is not None and ratio <= 2.0,
            "transactional_delivered": len(idle) + len(loaded),
            "broadcast_backlog_at_start": backlog_before,
            "broadcast_backlog_at_end": backlog_after,
            "broadcast_submitted_s": round(submitted, 1),
            "broadcast_drained_s": round(drained, 1),
            "check": {"ok": self.args.max_ratio == 0 or (ratio is not None and ratio <= self.args.max_ratio)},
        }


def _when(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def print_report(report: dict, out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    print(json.dumps(report, indent=2), file=out)


def main(argv: list[str] | None = None) -> int:
    return run_main(Bench(parse_args(argv)), print_report)


if __name__ == "__main__":
    sys.exit(main())
