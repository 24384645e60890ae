#!/usr/bin/env python
"""The reference for the Postwerk benchmarks: Postfix relaying smtp-source -> Postfix -> smtp-sink, or the bare
loop smtp-source -> smtp-sink (what the two tools alone can do on this machine).

Starts Postfix's smtp-sink on 127.0.0.2 (every message dumped to a file and checked after the run), a private
Postfix instance (its own config, queue and data directories in the run's temporary folder; smtpd on a free
127.0.0.1 port; relayhost = the sink; default queue fsync behaviour), and one smtp-source process per recipient
domain (20 sessions over 20 domains by default, -d: every session sends all its messages), then measures like
the Postwerk benchmarks: accepted/s (first connect -> last smtp-source done), delivered/s (first connect -> the
last new recipient at the sink), Postfix's own delay per recipient (its log), CPU and peak RSS per process.

    .venv/bin/python bench/postfix_relay.py                     # 2000 messages x 2 KB, 20 sessions, 20 domains
    .venv/bin/python bench/postfix_relay.py --mta none          # the bare loop smtp-source -> smtp-sink
    .venv/bin/python bench/postfix_relay.py --messages 20000 --json > run.json

Needs root (Postfix's daemons run as the postfix user) and Debian's postfix package; no database, no broker.
Everything it starts is stopped on exit, Ctrl-C, SIGTERM or error; Postfix through `postfix -c DIR stop`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness, mta  # noqa: E402
from bench.harness import SINK_HOST, BaseBench, Load  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Reference benchmark: smtp-source -> Postfix -> smtp-sink (or smtp-source -> smtp-sink).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--mta", choices=["postfix", "none"], default="postfix", help="none: the bare tool loop")
    p.add_argument("--messages", type=int, default=2000, help="messages (smtp-source -m, split over the domains)")
    p.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions (smtp-source -s, split)")
    p.add_argument("--domains", type=int, default=20, help="recipient domains dN.bench.example (one smtp-source each)")
    p.add_argument("--reconnect", action="store_true", help="one message per session (smtp-source without -d)")
    p.add_argument("--body-size", type=int, default=2048, help="bytes of body per message (smtp-source -l)")
    p.add_argument("--timeout", type=float, default=0, help="seconds to wait for delivery (0 = auto)")
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary folder (Postfix's maillog, dumps)")
    p.add_argument("--json", action="store_true", help="also print the result as JSON on stdout (table on stderr)")
    args = p.parse_args(argv)
    if min(args.messages, args.sessions, args.domains, args.body_size) < 1:
        p.error("--messages, --sessions, --domains and --body-size must be at least 1")
    if args.sessions < args.domains:
        p.error("--sessions must be at least --domains (one smtp-source process per domain)")
    args.sink, args.recipients, args.profile = "smtp-sink", 1, None
    return args


class Bench(BaseBench):
    """No Postwerk here: the sink, smtp-source and (unless --mta none) Postfix, with BaseBench's bookkeeping."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.postfix: mta.PrivatePostfix | None = None
        self.fleet = mta.SmtpSourceFleet(
            messages=args.messages,
            sessions=args.sessions,
            domains=args.domains,
            body_size=args.body_size,
            reconnect=args.reconnect,
            log_dir=self.tmp,
        )

    def setup(self) -> tuple[str, int]:
        """Sink, then Postfix; returns where smtp-source connects."""
        self.monitor.start()
        self.smtp_sink = mta.SmtpSink(SINK_HOST, self.tmp)
        sink_port = self.smtp_sink.start(self.procs, self.monitor)
        if self.args.mta == "none":
            harness.log(f"smtp-sink on {SINK_HOST}:{sink_port}; smtp-source connects to it directly")
            return SINK_HOST, sink_port
        self.tmp.chmod(0o711)  # the postfix user must get through it to its queue and data directories
        self.postfix = mta.PrivatePostfix(self.tmp / "postfix", (SINK_HOST, sink_port))
        port = self.postfix.start(self.procs, self.monitor)
        harness.log(f"postfix (config {self.postfix.conf}) on 127.0.0.1:{port}, relayhost {SINK_HOST}:{sink_port}")
        return "127.0.0.1", port

    def run(self) -> dict:
        host, port = self.setup()
        self.check_quiet()
        load = Load(pg_before={}, redis_before=0, cpu_before=self.monitor.cpu_snapshot())
        plan = self.fleet.plan
        harness.log(f"smtp-source: {self.args.messages} messages, {len(plan)} processes, {self.args.sessions} sessions")
        load.t0 = time.monotonic()
        self.fleet.start(self.procs, self.monitor, host, port)
        expected = self.wait_delivery(
            load,
            sending=self.fleet.running,
            accepted_live=self.fleet.accepted_live,
            accepted_total=self.fleet.accepted_live,
            front="smtp-source",
        )
        load.db_done = load.sink_done  # no database: done when the sink has everything
        load.cpu_after = self.monitor.cpu_snapshot()
        self.monitor.sample()
        if self.postfix is not None:
            load.states, delays, load.messages_in_db = self.postfix.deliveries(expected)
            load.lag = harness.lag_summary(delays)
        self.check_sink(load, dkim=False)  # Postfix does not sign
        return self.report(load)

    def report(self, load: Load) -> dict:
        a = self.args
        res = self.fleet.result()
        first_start, last_ok = res["first_start"], res["last_ok"]
        seconds = last_ok - first_start
        delivery = self.delivery(load, first_start, last_ok, "tail_after_smtp_s")
        resources = self.resources(load, first_start, delivery["delivered"])
        want = a.messages
        ok = (
            not res["errors"]
            and res["accepted"] == want
            and delivery["delivered"] == want
            and delivery["sink"]["recipients"] == want
            and (self.postfix is None or load.states.get("sent", 0) == want == sum(load.states.values()))
        )
        return {
            "config": {
                "mta": a.mta,
                "messages": want,
                "sessions": a.sessions,
                "domains": a.domains,
                "smtp_source_processes": res["processes"],
                "reconnect": a.reconnect,
                "body_bytes": a.body_size,
                "cpus": os.cpu_count(),
                "sink": "smtp-sink",
            },
            "smtp": {
                "accepted": res["accepted"],
                "errors": len(res["errors"]),
                "error_samples": res["errors"][:5],
                "seconds": round(seconds, 3),
                "accepted_per_s": round(res["accepted"] / seconds, 1) if seconds > 0 else None,
            },
            **self.sections(load, delivery, ok, resources),
        }


def print_report(r: dict, out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    say = harness.sayer(out)
    c, smtp, dl = r["config"], r["smtp"], r["delivery"]
    what = "smtp-source -> Postfix -> smtp-sink" if c["mta"] == "postfix" else "smtp-source -> smtp-sink (bare)"
    say()
    say(
        f"{what}: {c['messages']} messages x {c['body_bytes']} B to {c['domains']} domains, {c['sessions']} "
        f"sessions from {c['smtp_source_processes']} smtp-source processes"
        + (", one message per session" if c["reconnect"] else "")
        + f" | {c['cpus']} CPUs"
    )
    say()
    d = harness.delivery_rows(r, front="smtp-source", start="first connect")
    rows = [
        ("SMTP accepted/s", f"{smtp['accepted_per_s']}", f"{smtp['accepted']} in {smtp['seconds']} s (-> last done)"),
        d["delivered"],
        d["tail"],
    ]
    if c["mta"] == "postfix":
        acc = dl["accept_to_delivered_s"]
        rows.append(
            ("Postfix delay", f"p50 {harness._ms(acc, 'p50')} s", harness.spread(acc, " s") + " (its log: delay=)")
        )
    errors = "; ".join(smtp["error_samples"][:1])
    rows += [("smtp-source errors", f"{smtp['errors']}", errors), d["sink"]]
    harness.print_rows(rows, say)
    harness.print_resources(r, say, want=c["messages"])


def main(argv: list[str] | None = None) -> int:
    return harness.run_main(Bench(parse_args(argv)), print_report)


if __name__ == "__main__":
    sys.exit(main())
