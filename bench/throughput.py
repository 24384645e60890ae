#!/usr/bin/env python
"""Issue #6: Postwerk and Postfix side by side, on the same machine, in the same run.

Each run measures, one after the other, with the same messages (N x 2 KB, one recipient each, spread over 20
recipient domains) and the same recipient MX (Postfix's smtp-sink on 127.0.0.2, every message dumped and
checked):

- postfix: smtp-source (20 sessions) -> a private Postfix instance -> smtp-sink        (bench/postfix_relay.py)
- api:     a concurrent client -> POST /api/v1/messages/batch -> Postwerk -> smtp-sink   (bench/send_api.py)
- api-single: 16 clients, one message per POST /api/v1/messages -> Postwerk -> smtp-sink (send_api.py --batch 0)
- smtp:    smtp-source (20 sessions) -> Postwerk's submission listener -> smtp-sink       (bench/smtp_ingest.py)
- bare:    smtp-source -> smtp-sink, what the tools alone do (reference for the others) (postfix_relay.py --mta none)
- with --embedded also api-embedded, api-single-embedded and smtp-embedded: the same on SQLite + the filesystem
  broker.

The settings of a run (--api-rate-limit, --setting NAME=VALUE, worker counts) are given to every process each
benchmark starts; the environment this script runs in is not (each run starts from the same settings).

Every benchmark runs in its own process with --json and starts (and stops) everything it needs; Postwerk runs
on PostgreSQL + Redis, which must be running (the bench database and Redis db numbers are flushed). A Postwerk
run that fails is retried once (--retries); both attempts are kept. The table gives the median of the runs and
min-max; the ratio Postwerk/Postfix is taken per run (same machine state), then its median.

    .venv/bin/python bench/throughput.py                          # 20,000 messages, 3 runs (about an hour)
    .venv/bin/python bench/throughput.py --messages 2000 --runs 1 # quick look
    .venv/bin/python bench/throughput.py --paths postfix,api --embedded --json > throughput.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.harness import DRIVER, OTHER, PYTHON, ROOT, log  # noqa: E402

BENCH = Path(__file__).resolve().parent
# path -> (label, script, fixed options, Postwerk?)
PATHS: dict[str, tuple[str, str, list[str], bool]] = {
    "postfix": ("Postfix relay", "postfix_relay.py", [], False),
    "api": ("Postwerk API", "send_api.py", [], True),
    # One message per POST /api/v1/messages, the way transactional applications send (issue #21).
    "api-single": ("Postwerk API, one message per request", "send_api.py", ["--batch", "0"], True),
    "smtp": ("Postwerk SMTP", "smtp_ingest.py", ["--driver", "smtp-source"], True),
    "bare": ("bare smtp-source -> smtp-sink", "postfix_relay.py", ["--mta", "none"], False),
    "api-embedded": ("Postwerk API, embedded", "send_api.py", ["--embedded"], True),
    "api-single-embedded": (
        "Postwerk API, one message per request, embedded",
        "send_api.py",
        ["--batch", "0", "--embedded"],
        True,
    ),
    "smtp-embedded": ("Postwerk SMTP, embedded", "smtp_ingest.py", ["--driver", "smtp-source", "--embedded"], True),
}
RATIOS = tuple((path, "postfix") for path in PATHS if PATHS[path][3])
EMBEDDED = [path for path in PATHS if path.endswith("-embedded")]
# Load generators, sinks and this machinery: not part of the system under test.
NOT_SUT = {DRIVER, OTHER, "bench driver clients", "smtp-source", "smtp-sink", "sink"}
CODE_DIRS = ("sending", "accounts", "config")  # the Postwerk code a run measures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Postwerk vs Postfix, side by side (issue #6).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--messages", type=int, default=20000, help="messages per path and run (2 KB, one recipient)")
    p.add_argument("--runs", type=int, default=3, help="runs; each runs every path once")
    p.add_argument(
        "--paths", default="postfix,api,api-single,smtp,bare", help=f"comma-separated, of: {', '.join(PATHS)}"
    )
    p.add_argument("--embedded", action="store_true", help=f"add {', '.join(EMBEDDED)} (SQLite, filesystem)")
    p.add_argument("--domains", type=int, default=20, help="recipient domains")
    p.add_argument("--body-size", type=int, default=2048, help="bytes of body per message")
    p.add_argument("--sessions", type=int, default=20, help="smtp-source sessions (SMTP paths)")
    p.add_argument("--smtp-processes", type=int, default=1, help="smtpserver processes sharing the port (SMTP paths)")
    p.add_argument("--clients", type=int, default=4, help="API client threads")
    p.add_argument("--batch", type=int, default=500, help="messages per batch request (0 = POST /api/v1/messages)")
    p.add_argument("--single-clients", type=int, default=16, help="API client threads of the api-single paths")
    p.add_argument(
        "--api-rate-limit",
        type=int,
        default=0,
        help="POSTWERK_API_RATE_LIMIT of every Postwerk process (requests/s per key; 0 = none: the runs measure "
        "the pipeline, not the limit)",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every Postwerk process of every path (repeatable)",
    )
    p.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--web-threads", type=int, default=4, help="gunicorn threads per worker")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=4, help="pool size per Celery worker")
    p.add_argument("--pool", choices=["prefork", "threads"], default="threads", help="Celery pool")
    p.add_argument("--dkim-sample", type=int, default=500, help="DKIM signatures verified per Postwerk run (0 = all)")
    p.add_argument("--database-url", help="bench database of the Postwerk paths (default: each script's own)")
    p.add_argument(
        "--broker-url", help="Redis broker of the Postwerk paths, its db flushed (default: each script's own)"
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record on Postwerk's processes; each run's stacks in DIR/<path>-<run>/ (pip install py-spy)",
    )
    p.add_argument("--retries", type=int, default=1, help="retries of a failed Postwerk run")
    p.add_argument("--out", help="folder for each run's JSON and log (default: a new temporary folder, kept)")
    p.add_argument("--keep-logs", action="store_true", help="keep every benchmark's process logs and sink dumps")
    p.add_argument("--json", action="store_true", help="also print everything as JSON on stdout (table on stderr)")
    p.add_argument("--report", metavar="JSON", help="only print the table of an earlier run's --json output")
    args = p.parse_args(argv)
    args.path_list = [x.strip() for x in args.paths.split(",") if x.strip()]
    if args.embedded:
        args.path_list += [x for x in EMBEDDED if x not in args.path_list]
    unknown = [x for x in args.path_list if x not in PATHS]
    if unknown:
        p.error(f"unknown path(s) {unknown}; known: {', '.join(PATHS)}")
    if min(args.messages, args.runs, args.domains, args.sessions, args.clients, args.single_clients) < 1:
        p.error("--messages, --runs, --domains, --sessions, --clients and --single-clients must be at least 1")
    if args.sessions < args.domains:
        p.error("--sessions must be at least --domains (smtp-source: one process per recipient domain)")
    return args


def command(args: argparse.Namespace, path: str, run: int = 1) -> list[str]:
    """The benchmark command line of one path."""
    _, script, fixed, postwerk = PATHS[path]
    argv = [PYTHON, str(BENCH / script), "--json", *fixed, "--messages", str(args.messages)]
    argv += ["--domains", str(args.domains), "--body-size", str(args.body_size)]
    if args.keep_logs:
        argv.append("--keep-logs")
    if postwerk:
        argv += ["--sink", "smtp-sink", "--dkim-sample", str(args.dkim_sample), "--workers", str(args.workers)]
        argv += ["--concurrency", str(args.concurrency), "--pool", args.pool]
        argv += ["--api-rate-limit", str(args.api_rate_limit)]
        argv += [f"--setting={item}" for item in args.setting]
        if not path.endswith("embedded"):
            argv += ["--database-url", args.database_url] if args.database_url else []
            argv += ["--broker-url", args.broker_url] if args.broker_url else []
        if args.profile:
            argv += ["--profile", str(Path(args.profile) / f"{path}-{run}")]
    if script == "send_api.py" and "--batch" in fixed:  # api-single: its own client count, batch fixed at 0
        argv += ["--clients", str(args.single_clients)]
        argv += ["--web-workers", str(args.web_workers), "--web-threads", str(args.web_threads)]
    elif script == "send_api.py":
        argv += ["--clients", str(args.clients), "--batch", str(args.batch)]
        argv += ["--web-workers", str(args.web_workers), "--web-threads", str(args.web_threads)]
    else:
        argv += ["--sessions", str(args.sessions)]
        if postwerk:
            argv += ["--smtp-processes", str(args.smtp_processes)]
    return argv


# --- running ------------------------------------------------------------------------------------------


def code_version() -> str:
    """The commit the Postwerk code is at, and how many of its files are modified: others may be changing it
    while the runs go on, which the table must show."""

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line for line in git("status", "--porcelain", "--", *CODE_DIRS).splitlines() if line.strip()]
    dirty = hashlib.sha256(git("diff", "HEAD", "--", *CODE_DIRS).encode()).hexdigest()[:8] if changed else ""
    return head + (f"+{len(changed)} changed ({dirty})" if changed else "")


def preflight(paths: list[str]) -> list[str]:
    """What is missing before anything starts: PostgreSQL and Redis (not started here: like the other
    benchmarks, these use the running servers), Postfix's tools, root for the private Postfix."""
    import socket

    from bench import mta

    problems = []
    if any(PATHS[p][3] and not p.endswith("embedded") for p in paths):
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379)):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except OSError:
                problems.append(f"{name} is not listening on 127.0.0.1:{port}")
    for program in ("smtp-sink", "smtp-source") + (("postfix", "postconf") if "postfix" in paths else ()):
        try:
            mta.tool(program)
        except RuntimeError as exc:
            problems.append(str(exc))
    if "postfix" in paths and os.geteuid() != 0:
        problems.append("the private Postfix instance needs root")
    return problems


class Runner:
    """Runs one benchmark process at a time; stops it (SIGTERM: it stops everything it started) on exit."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.current: subprocess.Popen | None = None

    def run(self, argv: list[str], name: str) -> dict:
        json_path, log_path = self.out / f"{name}.json", self.out / f"{name}.log"
        if Path("/usr/bin/setpriv").exists():  # the benchmark gets SIGTERM if this process dies
            argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
        started, code = time.monotonic(), code_version()
        with json_path.open("wb") as out, log_path.open("wb") as err:
            self.current = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            returncode = self.current.wait()
            self.current = None
        try:
            report = json.loads(json_path.read_text() or "null")
        except ValueError:
            report = None
        ok = returncode == 0 and bool(report) and report["check"]["ok"]
        attempt = {"returncode": returncode, "ok": ok, "seconds": round(time.monotonic() - started, 1), "code": code}
        attempt.update(json=str(json_path), log=str(log_path), report=report)
        if not ok:
            attempt["log_tail"] = harness.tail(log_path, 25)
        return attempt

    def stop(self) -> None:
        if self.current is not None and self.current.poll() is None:
            self.current.send_signal(signal.SIGTERM)
            try:
                self.current.wait(60)
            except subprocess.TimeoutExpired:
                self.current.kill()


def sut_groups(report: dict, path: str) -> list[dict]:
    """The system under test's CPU groups: Postwerk's processes with PostgreSQL and Redis; Postfix's; for the
    bare loop, smtp-source and smtp-sink themselves."""
    groups = report["cpu_groups"]
    if path == "bare":
        return [g for g in groups if g["group"] in ("smtp-source", "smtp-sink")]
    if not PATHS[path][3]:
        return [g for g in groups if g["group"] == "postfix"]
    return [g for g in groups if g["group"] not in NOT_SUT]


def figures(report: dict, path: str) -> dict:
    """The numbers the table needs from one benchmark report."""
    front = report.get("api") or report["smtp"]
    groups = report["cpu_groups"]
    sut = sut_groups(report, path)
    n = max(1, report["delivery"]["delivered"])
    procs = [p for p in report["processes"] if p["role"].split(" ")[0] not in ("smtp-source", "smtp-sink", "sink")]
    other = next((g for g in groups if g["group"] == OTHER), {"cpu_pct_of_one_core": 0.0})
    lat = front.get("latency_ms_per_request") or {}
    return {
        "accepted_per_s": front["accepted_per_s"],
        "delivered_per_s": report["delivery"]["delivered_per_s"],
        "latency_p50_ms": lat.get("p50"),
        "latency_p99_ms": lat.get("p99"),
        "lag_p50_s": report["delivery"]["accept_to_delivered_s"]["p50"],
        "lag_p99_s": report["delivery"]["accept_to_delivered_s"]["p99"],
        "cpu_ms_per_message": round(1000 * sum(g["cpu_s"] for g in sut) / n, 2),
        "peak_rss_mb": round(sum(g["peak_rss_mb"] or 0 for g in sut), 1),
        "processes": len(procs),
        "other_cpu_pct": other["cpu_pct_of_one_core"],
        "busy_before_s": report.get("busy_before_load_cpu_s"),
    }


def process_memory(reports: list[dict]) -> dict[str, tuple[int, float]]:
    """Peak RSS per kind of process (role without its #n), the max over the runs: {role: (count, MB)}."""
    out: dict[str, tuple[int, float]] = {}
    for report in reports:
        kinds: dict[str, list[float]] = {}
        for p in report["processes"]:
            if p["role"].split(" ")[0] in ("smtp-source", "smtp-sink", "sink"):
                continue
            kinds.setdefault(re.sub(r" #\d+$", "", p["role"]), []).append(p["peak_rss_mb"])
        for role, values in kinds.items():
            count, peak = out.get(role, (0, 0.0))
            out[role] = (max(count, len(values)), max(peak, max(values)))
    return out


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = fmt.format(statistics.median(values))
    return med if len(values) == 1 else f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def summarize(args: argparse.Namespace, results: dict[str, list[dict]]) -> dict:
    """Per path: figures of each good run, medians; ratios per run."""
    summary: dict = {"paths": {}, "ratios": {}}
    for path, runs in results.items():
        good = [run["attempts"][-1]["report"] for run in runs if run["attempts"][-1]["ok"]]
        per_run = [figures(r, path) for r in good]
        keys = per_run[0].keys() if per_run else []
        summary["paths"][path] = {
            "label": PATHS[path][0],
            "runs_ok": len(good),
            "runs": len(runs),
            "median": {k: statistics.median([f[k] for f in per_run if f[k] is not None] or [0]) for k in keys},
            "per_run": per_run,
            "memory": {role: {"processes": c, "peak_rss_mb": mb} for role, (c, mb) in process_memory(good).items()},
        }
    for ours, theirs in RATIOS:
        if ours not in results or theirs not in results:
            continue
        pairs = []
        for a, b in zip(results[ours], results[theirs], strict=True):
            if a["attempts"][-1]["ok"] and b["attempts"][-1]["ok"]:
                fa, fb = figures(a["attempts"][-1]["report"], ours), figures(b["attempts"][-1]["report"], theirs)
                pairs.append({k: round(fa[k] / fb[k], 3) for k in ("accepted_per_s", "delivered_per_s")})
        if pairs:
            summary["ratios"][f"{ours}/{theirs}"] = {
                "per_run": pairs,
                "median": {k: statistics.median(p[k] for p in pairs) for k in ("accepted_per_s", "delivered_per_s")},
            }
    return summary


# --- output -------------------------------------------------------------------------------------------


def print_report(args: argparse.Namespace, results: dict[str, list[dict]], summary: dict, out) -> None:  # type: ignore[no-untyped-def]
    say = harness.sayer(out)
    say()
    say(
        f"Postwerk vs Postfix (issue #6): {args.messages} messages x {args.body_size} B, one recipient each, "
        f"{args.domains} domains; {args.runs} run(s): median (min-max) of the runs that passed their check"
    )
    say(f"  command: {args.command}")
    say(
        f"  Postwerk: PostgreSQL + Redis; celery {args.workers} x -P {args.pool} -c {args.concurrency}; API: "
        f"{args.clients} clients, batch {args.batch} (api-single: {args.single_clients} clients, one message per "
        f"request), gunicorn {args.web_workers}x{args.web_threads}, API rate limit "
        f"{args.api_rate_limit or 'none'}{''.join('; ' + s for s in args.setting)}; SMTP: "
        f"smtp-source {args.sessions} sessions, trusted network, smtpserver x{args.smtp_processes}"
    )
    say(f"  Postfix: private instance, default queue fsync, relayhost = the sink; smtp-source {args.sessions} sessions")
    say(f"  every path: smtp-sink on 127.0.0.2 as the MX of all {args.domains} domains; results in {args.out}")
    say()
    rows = [["path", "accepted/s", "delivered/s", "API latency p50 / p99", "accepted->delivered p50 / p99",
             "CPU ms/msg", "peak RSS MB"]]  # fmt: skip
    for s in summary["paths"].values():
        runs = s["per_run"]

        def col(key: str, fmt: str = "{:.0f}", scale: float = 1.0, runs: list[dict] = runs) -> str:
            return spread([f[key] * scale if f[key] is not None else None for f in runs], fmt)

        has_lat = bool(runs and runs[0]["latency_p50_ms"])
        lat = f"{col('latency_p50_ms')} / {col('latency_p99_ms')} ms" if has_lat else "-"
        lag = f"{col('lag_p50_s', '{:.1f}')} / {col('lag_p99_s', '{:.1f}')} s" if runs and runs[0]["lag_p50_s"] else "-"
        label = s["label"] + ("" if s["runs_ok"] == s["runs"] else f" [{s['runs_ok']}/{s['runs']} ok]")
        rows.append([label, col("accepted_per_s"), col("delivered_per_s"), lat, lag,
                     col("cpu_ms_per_message", "{:.1f}"), col("peak_rss_mb")])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        say(
            "  | "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
            + " |"
        )
        if n == 0:
            say("  |" + "|".join("-" * (w + 2) for w in widths) + "|")
    say("  (API latency: per request, a batch or one message; CPU and RSS: the system under test, load generators")
    say("   and sink excluded,")
    say("   PostgreSQL and Redis CPU included, their memory not; RSS summed over the processes, shared pages counted")
    say("   in each; the bare loop's CPU and RSS are smtp-source's and smtp-sink's)")
    say()
    for name, ratio in summary["ratios"].items():
        ours, theirs = name.split("/")
        d = [p["delivered_per_s"] for p in ratio["per_run"]]
        a = [p["accepted_per_s"] for p in ratio["per_run"]]
        say(
            f"  {PATHS[ours][0]} / {PATHS[theirs][0]}: delivered/s {spread(d, '{:.2f}')}, "
            f"accepted/s {spread(a, '{:.2f}')}  (per run, then the median)"
        )
    say()
    say("  Runs (other CPU: CPU of processes these benchmarks did not start, and the kernel, in % of one core;")
    say("  above 25% the machine was not quiet and the figures are distorted):")
    for i in range(args.runs):
        cells = []
        for path, runs in results.items():
            attempts = runs[i]["attempts"]
            tries = "" if len(attempts) == 1 else f" (attempt {len(attempts)}; earlier: " + ", ".join(
                f"exit {x['returncode']}" for x in attempts[:-1]) + ")"  # fmt: skip
            last = attempts[-1]
            if last["ok"]:
                f = figures(last["report"], path)
                flag = " !" if f["other_cpu_pct"] > 25 else ""
                cells.append(f"{path} {f['delivered_per_s']:.0f}/s, other CPU {f['other_cpu_pct']:.0f}%{flag}{tries}")
            else:
                cells.append(f"{path} FAILED ({failure(last)}; {last['log']}){tries}")
        say(f"    run {i + 1}: " + "; ".join(cells))
    codes = sorted({a["code"] for runs in results.values() for run in runs for a in run["attempts"]})
    say(f"  Postwerk code ({'/'.join(CODE_DIRS)}): " + ", ".join(codes))
    if len(codes) > 1:
        say("  WARNING: the code changed during these runs; per run and path it was:")
        for i in range(args.runs):
            say(
                f"    run {i + 1}: "
                + "; ".join(f"{p} {runs[i]['attempts'][-1]['code']}" for p, runs in results.items())
            )
    say()
    say("  Checks (each run): " + checks_line(results))
    for path, runs in results.items():
        for run in runs:
            for n, attempt in enumerate(run["attempts"], 1):
                if not attempt["ok"]:
                    say(f"    run {run['run']} {path} attempt {n} failed: {failure(attempt)}")
    say()
    say("  Peak RSS per process (max over runs):")
    for s in summary["paths"].values():
        parts = [
            f"{role} {m['peak_rss_mb']:.0f}"
            if m["processes"] == 1
            else f"{role} x{m['processes']} {m['peak_rss_mb']:.0f}"
            for role, m in sorted(s["memory"].items())
        ]
        say(f"    {s['label']}: " + (", ".join(parts) + " MB" if parts else "-"))
    say()


def failure(attempt: dict) -> str:
    """Why an attempt failed, in a line: the report's check, or the end of its log."""
    r = attempt.get("report")
    if not r:
        lines = [line for line in attempt.get("log_tail", "").splitlines() if line.strip()]
        return f"exit {attempt['returncode']}, no report: {lines[-1][:200] if lines else ''}"
    chk = r["check"]
    states = ", ".join(f"{k}={v}" for k, v in sorted(chk["recipient_states"].items()))
    parts = [f"delivered {r['delivery']['delivered']}/{r['config']['messages']}"]
    parts += [f"states {states}"] if states else []
    parts += [f"died: {', '.join(chk['died'])}"] if chk.get("died") else []
    parts += chk.get("sink_problems", [])
    logs = chk.get("log_problems", {})
    parts += [f"{logs['tracebacks']} tracebacks in logs"] if logs.get("tracebacks") else []
    return "; ".join(parts)


def checks_line(results: dict[str, list[dict]]) -> str:
    out = []
    for path, runs in results.items():
        reports = [run["attempts"][-1]["report"] for run in runs if run["attempts"][-1]["report"]]
        if not reports:
            out.append(f"{path}: no report")
            continue
        sinks = [r["delivery"]["sink"] for r in reports]
        text = (
            f"{path}: {sum(r['delivery']['delivered'] for r in reports)}/{len(reports) * r_messages(reports)} "
            f"delivered, {sum(s['duplicates'] for s in sinks)} duplicates"
        )
        dkim = [s["dkim"] for s in sinks if s.get("dkim")]
        if dkim:
            text += (
                f", DKIM-Signature on {sum(d['signed'] for d in dkim)}/{sum(s['messages'] for s in sinks)}, "
                f"{sum(d['verified'] for d in dkim)}/{sum(d['sampled'] for d in dkim)} sampled verified"
            )
        locked = sum(r["check"].get("log_problems", {}).get("database_locked", 0) for r in reports)
        if PATHS[path][3]:
            text += f", {locked} lock errors"
        out.append(text)
    return "; ".join(out)


def r_messages(reports: list[dict]) -> int:
    return reports[0]["config"]["messages"]


# --- entry point --------------------------------------------------------------------------------------


def reprint(path: str) -> int:
    saved = json.loads(Path(path).read_text())
    args = argparse.Namespace(**saved["config"])
    summary = summarize(args, saved["results"])  # recomputed: the same figures, from the saved reports
    print_report(args, saved["results"], summary, sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return reprint(args.report)
    args.command = shlex.join([os.path.relpath(PYTHON, ROOT), os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])])
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="postwerk-throughput-"))
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    runner = Runner(out)
    problems = preflight(args.path_list)
    if problems:
        log("cannot run: " + "; ".join(problems))
        return 2

    def on_signal(signum, frame):  # type: ignore[no-untyped-def]
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    results: dict[str, list[dict]] = {path: [] for path in args.path_list}
    try:
        for i in range(1, args.runs + 1):
            for path in args.path_list:
                argv_ = command(args, path, i)
                attempts = []
                for attempt in range(1 + (args.retries if PATHS[path][3] else 0)):
                    name = f"run{i}-{path}" + (f"-retry{attempt}" if attempt else "")
                    log(f"run {i}/{args.runs}: {PATHS[path][0]}: {shlex.join(argv_[1:])}")
                    result = runner.run(argv_, name)
                    attempts.append(result)
                    if result["ok"]:
                        f = figures(result["report"], path)
                        log(
                            f"  {f['accepted_per_s']} accepted/s, {f['delivered_per_s']} delivered/s, other CPU "
                            f"{f['other_cpu_pct']}% ({result['seconds']} s)"
                        )
                        break
                    log(f"  FAILED: {failure(result)}; log {result['log']}")
                results[path].append({"run": i, "command": shlex.join(argv_), "attempts": attempts})
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        runner.stop()
    summary = summarize(args, results)
    print_report(args, results, summary, sys.stderr if args.json else sys.stdout)
    if args.json:
        config = {k: v for k, v in vars(args).items() if k not in ("path_list",)}
        print(json.dumps({"config": config, "summary": summary, "results": results}, indent=2))
    return 0 if all(run["attempts"][-1]["ok"] for runs in results.values() for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
