"""Shared machinery of the end-to-end benchmarks (`send_api.py`, `smtp_ingest.py`, `postfix_relay.py`).

Process bookkeeping (start/stop, per-tree CPU and RSS), the backend every benchmark needs (bench database,
Redis broker, or the embedded SQLite + filesystem broker; loopback DNS; the counting SMTP sink, ours or
Postfix's smtp-sink from `mta.py`; Celery workers), waiting for delivery, the figures taken from the database,
PostgreSQL and Redis, and the parts of the report every benchmark prints.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import sink as sinkmod  # noqa: E402

PYTHON = sys.executable
SENDER_DOMAIN = "bench.example"
SINK_HOST = "127.0.0.2"
DNS_HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DRIVER = "bench driver (this process)"
SYSTEM = "(whole machine)"
OTHER = "other (kernel, rest of machine)"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- options ------------------------------------------------------------------------------------------


# The servers a benchmark can put in front of Postwerk. Each brings the options its start-up code reads
# (send_api.Bench.start_web, smtp_ingest.Bench.start_smtpserver), so a benchmark that runs a front gets them
# all from add_common_args, and an option added here reaches every benchmark that runs that front.
WEB, SMTP = "gunicorn", "smtpserver"
FRONT_OPTIONS = {WEB: ("web_workers", "web_threads"), SMTP: ("sessions", "smtp_processes")}


def add_common_args(p: argparse.ArgumentParser, *, fronts: tuple[str, ...], broker_url: str) -> None:
    """Every option the shared machinery reads, for a benchmark that runs `fronts` (WEB, SMTP or both):
    the message body, the Celery workers, each front's servers, the backend, sink and output."""
    unknown = set(fronts) - set(FRONT_OPTIONS)
    if unknown or not fronts:
        raise ValueError(f"fronts must be some of {list(FRONT_OPTIONS)}, not {fronts}")
    p.add_argument("--body-size", type=int, default=2048, help="bytes of text body per message")
    _add_worker_args(p)
    if WEB in fronts:
        p.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        p.add_argument("--web-threads", type=int, default=4, help="gunicorn threads per worker")
    if SMTP in fronts:
        p.add_argument("--sessions", type=int, default=20, help="concurrent SMTP client sessions")
        p.add_argument(
            "--smtp-processes", type=int, default=1, help="smtpserver --processes: server processes on the one port"
        )
    _add_infra_args(p, broker_url=broker_url, front=" and ".join(fronts))


def _add_worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domains", type=int, default=10, help="recipient domains dN.bench.example")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=4, help="pool size per Celery worker")
    # threads: as fast as prefork or faster end to end on the reference 2-CPU machine, at a quarter of the
    # memory (one ~100 MB process per worker instead of 1 + concurrency processes of ~90 MB each).
    p.add_argument("--pool", choices=["prefork", "threads"], default="threads", help="Celery pool")


def _add_infra_args(p: argparse.ArgumentParser, *, broker_url: str, front: str) -> None:
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postwerk_bench", help="bench database")
    p.add_argument("--broker-url", default=broker_url, help="Redis broker (db is flushed)")
    p.add_argument(
        "--embedded",
        action="store_true",
        help="the embedded default instead: SQLite (WAL) and the filesystem broker in the run's temporary folder "
        "(--database-url and --broker-url are not used)",
    )
    _add_sink_args(p)
    p.add_argument("--worker-loglevel", default="WARNING", help="Celery worker --loglevel")
    p.add_argument(
        "--settings",
        default="config.settings",
        help="DJANGO_SETTINGS_MODULE for every process (for what-if runs; must be importable, e.g. from PYTHONPATH)",
    )
    p.add_argument(
        "--api-rate-limit",
        type=int,
        default=None,
        help="POSTWERK_API_RATE_LIMIT (requests per second per API key, 0 = none) for every process; default: "
        "Postwerk's own default",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable (POSTWERK_..., CELERY_...) for every process the benchmark starts; repeatable "
        "(the environment the benchmark itself runs in is not passed on: every run starts from the same settings)",
    )
    p.add_argument("--timeout", type=float, default=0, help="seconds to wait for delivery (0 = auto)")
    p.add_argument(
        "--stall",
        type=float,
        default=120,
        help="once the senders are done, stop waiting when nothing new reached the sink for this long (0 = never)",
    )
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up requests")
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary folder with process logs")
    p.add_argument(
        "--json", action="store_true", help="also print the result as JSON on stdout (the table goes to stderr then)"
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help=f"run py-spy record (raw collapsed stacks) on {front} and each Celery worker tree while sending, "
        "write DIR/<process>.txt and print the hottest functions (pip install py-spy into the venv first)",
    )


def _add_sink_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sink",
        choices=["python", "smtp-sink"],
        default="python",
        help="recipient MX: bench/sink.py (aiosmtpd, counts in shared memory) or Postfix's smtp-sink (C; every "
        "message dumped to a file and checked after the run: duplicates, DKIM)",
    )
    p.add_argument(
        "--dkim-sample",
        type=int,
        default=500,
        help="with --sink smtp-sink: messages whose DKIM signature is verified (0 = all); every message must be signed",
    )


def check_common_args(p: argparse.ArgumentParser, args: argparse.Namespace, *more: str) -> None:
    """--domains, --workers, --concurrency, the fronts' counts and the options named in `more` must be at
    least 1."""
    fronts = [name for names in FRONT_OPTIONS.values() for name in names if hasattr(args, name)]
    names = ["domains", "workers", "concurrency", *fronts, *more]
    if any(getattr(args, name) < 1 for name in names):
        listed = ", ".join(f"--{n.replace('_', '-')}" for n in names[:-1]) + f" and --{names[-1].replace('_', '-')}"
        p.error(f"{listed} must be at least 1")
    if not args.embedded and not urlsplit(args.database_url).scheme.startswith("postgres"):
        p.error("--database-url must be a PostgreSQL URL")
    try:
        bench_settings(args)
    except ValueError as exc:
        p.error(str(exc))


def bench_settings(args: argparse.Namespace) -> dict[str, str]:
    """The settings given on the command line (--api-rate-limit, --setting NAME=VALUE), as environment variables
    for every process a benchmark starts: web, SMTP server, Celery workers and manage.py alike."""
    out: dict[str, str] = {}
    for item in getattr(args, "setting", None) or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--setting wants NAME=VALUE, not {item!r}")
        out[name.strip()] = value
    if getattr(args, "api_rate_limit", None) is not None:
        out["POSTWERK_API_RATE_LIMIT"] = str(args.api_rate_limit)
    return out


def backend_config(args: argparse.Namespace) -> dict:
    """The report's description of the backend (part of each benchmark's `config`)."""
    return {
        "database": "sqlite (embedded)" if args.embedded else "postgresql",
        "broker": "filesystem (embedded)" if args.embedded else "redis",
        "embedded": args.embedded,
        "sink": args.sink,
        "env": bench_settings(args),
    }


# --- process bookkeeping ------------------------------------------------------------------------------


def read_stat(pid: int) -> tuple[int, str, list[str]] | None:
    """(ppid, comm, fields after comm) from /proc/<pid>/stat, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    lpar, rpar = raw.find("("), raw.rfind(")")
    rest = raw[rpar + 2 :].split()
    return int(rest[1]), raw[lpar + 1 : rpar], rest


def _cpu_ticks(rest: list[str]) -> int:
    # utime, stime, cutime, cstime: a process plus every child it reaped, so short-lived children count.
    return int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _process_table() -> dict[int, tuple[int, str, list[str]]]:
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def _descendants(root: int, table: dict[int, tuple[int, str, list[str]]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class Tracked:
    label: str
    pid: int
    group: str
    peak_rss_kb: int = 0
    comm: str = ""


class ProcessMonitor:
    """Samples VmRSS of every process in the started trees every `interval` seconds; CPU on demand."""

    EXTERNAL = {"postgres": "postgres (external)", "redis-server": "redis-server (external)"}

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.roots: list[tuple[str, int]] = []  # (group label, root pid)
        self.by_name: set[str] = set()  # groups whose processes are labelled by command name (Postfix daemons)
        self.tracked: dict[int, Tracked] = {}
        self.group_peak_kb: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def add_root(self, group: str, pid: int, label: str | None = None, *, by_name: bool = False) -> None:
        """Track the process tree of `pid` as part of `group`; `label` names the root in the process table;
        `by_name`: label the tree's processes by command name (e.g. "postfix smtpd #2")."""
        with self._lock:
            self.roots.append((group, pid))
            if by_name:
                self.by_name.add(group)
            if label is not None:
                self.tracked[pid] = Tracked(label, pid, group)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a sampling hiccup must not end the benchmark
                log(f"RSS sampler: {exc!r}")
            self._stop.wait(self.interval)

    def _label(self, group: str, pid: int, root: int, comm: str) -> str:
        if group in self.by_name:
            prefix = f"{group} {comm}"
            n = sum(1 for t in self.tracked.values() if t.label.startswith(prefix + " #")) + 1
            return f"{prefix} #{n}"
        if pid == root:
            return f"{group} (main)" if not group.startswith(("sink", "smtp-")) else group
        n = sum(1 for t in self.tracked.values() if t.group == group and t.pid != root) + 1
        kind = "worker" if group.startswith("gunicorn") else "child"
        return f"{group} {kind} #{n}"

    def sample(self) -> None:
        table = _process_table()
        with self._lock:
            roots = list(self.roots)
        sums: dict[str, int] = {}
        for group, root in roots:
            for pid in _descendants(root, table):
                rss = _rss_kb(pid)
                with self._lock:
                    t = self.tracked.get(pid)
                    comm = table[pid][1]
                    # by_name: a forked child keeps its parent's name until it execs, so label it again then
                    if t is None or (group in self.by_name and t.comm != comm):
                        peak = t.peak_rss_kb if t is not None else 0
                        self.tracked.pop(pid, None)
                        t = Tracked(self._label(group, pid, root, comm), pid, group, peak, comm)
                        self.tracked[pid] = t
                    t.peak_rss_kb = max(t.peak_rss_kb, rss)
                sums[group] = sums.get(group, 0) + rss
        with self._lock:
            for group, total in sums.items():
                self.group_peak_kb[group] = max(self.group_peak_kb.get(group, 0), total)

    def cpu_snapshot(self) -> dict[str, dict[int, int]]:
        """CPU ticks per group and pid, including reaped children, for the started trees and externals."""
        table = _process_table()
        out: dict[str, dict[int, int]] = {}
        with self._lock:
            roots = list(self.roots)
        for group, root in roots:
            for pid in _descendants(root, table):
                out.setdefault(group, {})[pid] = _cpu_ticks(table[pid][2])
        for pid, (_, comm, rest) in table.items():
            if comm in self.EXTERNAL:
                out.setdefault(self.EXTERNAL[comm], {})[pid] = _cpu_ticks(rest)
        out[SYSTEM] = {0: system_cpu_ticks()}
        me = read_stat(os.getpid())
        if me is not None:
            out[DRIVER] = {os.getpid(): int(me[2][11]) + int(me[2][12])}
        return out


def thread_ticks(pid: int) -> dict[int, int]:
    """CPU ticks (utime + stime) of each thread of one process, by thread id (the main thread's is the pid)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        out[int(tid)] = int(rest[11]) + int(rest[12])
    return out


def system_cpu_ticks() -> int:
    """Busy CPU ticks of the whole machine (all CPUs, everything but idle and iowait) from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already included in user/nice
    return sum(fields[:8]) - idle


def cpu_delta(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> dict[str, float]:
    """CPU seconds per group between two snapshots (per pid, so a process born in between counts from 0).

    A process that exited in between is covered through its parent's cutime/cstime, which is in the
    snapshot, minus what it had already used at `before`, which we no longer see: a small overcount at most.
    """
    result = {}
    for group, pids in after.items():
        prev = before.get(group, {})
        ticks = sum(now - prev.get(pid, 0) for pid, now in pids.items())
        result[group] = max(0, ticks) / CLK_TCK
    return result


def cpu_delta_per_pid(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> dict[int, float]:
    flat_before = {pid: t for pids in before.values() for pid, t in pids.items()}
    return {pid: max(0, t - flat_before.get(pid, 0)) / CLK_TCK for pids in after.values() for pid, t in pids.items()}


class Processes:
    """Everything this run started, stopped in reverse order.

    Each process gets its own stop signal (gunicorn and Celery: SIGQUIT, their quick/cold shutdown, which
    takes their children with them); whatever is left of a process group after the timeout gets SIGKILL.
    """

    def __init__(self) -> None:
        self.popens: list[tuple[str, subprocess.Popen, int]] = []
        self.use_setpriv = shutil.which("setpriv") is not None

    def start(
        self,
        label: str,
        argv: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        stop_signal: int = signal.SIGTERM,
    ) -> subprocess.Popen:
        # setpriv --pdeathsig: if this driver is killed with SIGKILL, the direct child still gets SIGTERM.
        # (The death signal fires when the creating *thread* exits, so start processes from the main thread.)
        if self.use_setpriv:
            argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
        out = log_path.open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        self.popens.append((label, proc, stop_signal))
        return proc

    def stop_all(self, timeout: float = 10.0) -> None:
        running = list(reversed(self.popens))
        for _, proc, stop_signal in running:
            if proc.poll() is None:
                try:
                    proc.send_signal(stop_signal)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for label, proc, _ in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{label} (pid {proc.pid}) did not stop in {timeout:.0f} s; killing its process group")
        for _, proc, _ in running:
            # The group may outlive its leader (e.g. pool children): SIGKILL whatever is left.
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # start_new_session=True: the group id is the leader's pid
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.popens.clear()


# --- the benchmark ------------------------------------------------------------------------------------


def percentiles(values: list[float], points=(50, 90, 99)) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    out = {}
    for p in points:
        # nearest rank
        k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        out[f"p{p}"] = ordered[k]
    out["max"] = ordered[-1]
    out["mean"] = sum(ordered) / len(ordered)
    return out


def lag_summary(seconds: list[float]) -> tuple[list[float], float] | None:
    """Load.lag from the accepted -> delivered time of each recipient: ([p50, p90, p99], max)."""
    pct = percentiles(seconds)
    return ([pct["p50"], pct["p90"], pct["p99"]], pct["max"]) if seconds else None


def text_body(size: int) -> str:
    words = (
        "Thank you for your order. Your parcel is on its way and should arrive within two working days. "
        "You can follow its progress at any time from your account page. "
    )
    lines, total, i = [], 0, 0
    while total < size:
        line = (words[i % 40 :] + words)[:72].strip()
        lines.append(line)
        total += len(line) + 1
        i += 7
    return "\n".join(lines)[:size]


@dataclass
class Load:
    """Raw measurements of one run, turned into the report by the benchmark's report()."""

    pg_before: dict[str, int]
    redis_before: int
    cpu_before: dict[str, dict[int, int]] = field(default_factory=dict)
    cpu_after: dict[str, dict[int, int]] = field(default_factory=dict)
    clients: list = field(default_factory=list)  # per-client results, the benchmark's own type
    t0: float = 0.0
    sink_done: float = 0.0
    db_done: float = 0.0
    timeline: list[dict] = field(default_factory=list)
    profile: dict = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    lag: tuple | None = None
    messages_in_db: int = 0
    events: dict[str, int] = field(default_factory=dict)
    max_attempts: int | None = None
    pg_after: dict[str, int] = field(default_factory=dict)
    redis_after: int = 0
    sink_check: dict = field(default_factory=dict)  # smtp-sink only: what the dumped messages say (mta.SmtpSink)


class BaseBench:
    """The backend of a run (database, broker, DNS, sink, Celery workers) and what every benchmark measures.

    A benchmark subclasses it with its front end (setup, load, report): see send_api.Bench, smtp_ingest.Bench.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = Processes()
        self.monitor = ProcessMonitor()
        self.tmp = Path(tempfile.mkdtemp(prefix="postwerk-bench-"))
        self.dns = None
        self.sink_proc: multiprocessing.Process | None = None
        self.sink_stats = None
        self.smtp_sink = None  # mta.SmtpSink with --sink smtp-sink
        self.quiet_busy: float | None = None  # check_quiet(): CPU-s the machine used in the second before the load
        self.failed = True
        self._cleaned = False
        self.env: dict[str, str] = {}

    # ..... setup

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTWERK_", "CELERY_", "DJANGO_"))}
        env.update(
            DJANGO_SETTINGS_MODULE=self.args.settings,
            DATABASE_URL=self.args.database_url,
            CELERY_BROKER_URL=self.args.broker_url,
            SECRET_KEY=secrets.token_urlsafe(48),
            POSTWERK_ENCRYPTION_KEY=secrets.token_urlsafe(32),
            POSTWERK_DATA_DIR=str(self.tmp / "data"),
            POSTWERK_HOSTNAME="mta.bench.example",
            POSTWERK_SMTP_CONNECT_TIMEOUT="5",
            POSTWERK_SMTP_COMMAND_TIMEOUT="30",
            LOG_LEVEL="WARNING",
            DEBUG="false",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        )
        env.update(bench_settings(self.args))
        if getattr(self.args, "embedded", False):
            # No DATABASE_URL, no CELERY_BROKER_URL: SQLite and the filesystem broker under POSTWERK_DATA_DIR.
            for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
                env.pop(name, None)
        return env

    @property
    def embedded(self) -> bool:
        return bool(getattr(self.args, "embedded", False))

    @property
    def sqlite_path(self) -> Path:
        return self.tmp / "data" / "postwerk.sqlite3"

    def manage(self, *argv: str, log_name: str) -> str:
        cmd = [PYTHON, str(ROOT / "manage.py"), *argv]
        result = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)
        (self.tmp / f"{log_name}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def db_connect(self, dbname: str | None = None):  # type: ignore[no-untyped-def]
        if self.embedded:
            import sqlite3

            return contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=30))
        import psycopg

        u = urlsplit(self.args.database_url)
        return psycopg.connect(
            host=u.hostname or "127.0.0.1",
            port=u.port or 5432,
            user=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password else None,
            dbname=dbname or u.path.lstrip("/"),
            autocommit=True,
        )

    def prepare_database(self) -> None:
        if self.embedded:
            log("migrate (embedded SQLite)")
            self.manage("migrate", "--no-input", log_name="migrate")
            return
        name = urlsplit(self.args.database_url).path.lstrip("/")
        with self.db_connect("postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                log(f"creating database {name}")
                conn.execute(f'CREATE DATABASE "{name}"')
        log("migrate + flush")
        self.manage("migrate", "--no-input", log_name="migrate")
        self.manage("flush", "--no-input", log_name="flush")
        with self.db_connect() as conn:
            conn.execute("VACUUM ANALYZE")

    def flush_redis(self) -> None:
        if self.embedded:
            return
        import redis

        client = redis.Redis.from_url(self.args.broker_url)
        client.flushdb()
        client.close()

    def start_dns(self) -> None:
        from tests.servers import DnsServer

        self.dns = DnsServer(DNS_HOST).start()
        for n in range(self.args.domains):
            name = f"d{n}.{SENDER_DOMAIN}"
            self.dns.add(name, "MX", f"10 mx.{name}.", ttl=3600)
            self.dns.add(f"mx.{name}", "A", SINK_HOST, ttl=3600)

    def start_sink(self) -> int:
        if getattr(self.args, "sink", "python") == "smtp-sink":
            from bench import mta

            self.smtp_sink = mta.SmtpSink(SINK_HOST, self.tmp, per_message=getattr(self.args, "recipients", 1))
            return self.smtp_sink.start(self.procs, self.monitor)
        ctx = multiprocessing.get_context("spawn")
        self.sink_stats = ctx.RawArray("d", sinkmod.SLOTS)
        parent, child = ctx.Pipe(duplex=False)
        self.sink_proc = ctx.Process(
            target=sinkmod.serve, args=(SINK_HOST, self.sink_stats, child, os.getpid()), name="bench-sink", daemon=True
        )
        self.sink_proc.start()
        child.close()
        if not parent.poll(30):
            raise RuntimeError("the SMTP sink did not start within 30 s")
        status, value = parent.recv()
        if status != "ok":
            raise RuntimeError(f"the SMTP sink failed to start: {value}")
        self.monitor.add_root("sink", self.sink_proc.pid)
        return int(value)

    def start_workers(self) -> list[subprocess.Popen]:
        procs = []
        for i in range(1, self.args.workers + 1):
            if self.embedded and procs:
                # kombu's filesystem transport: two workers declaring their queues at the same moment can read
                # a control/*.exchange file while the other writes it, and one dies (JSONDecodeError). One by one.
                self.wait_workers(procs, time.monotonic() + 60)
            proc = self.procs.start(
                f"celery worker {i}",
                [
                    PYTHON, "-m", "celery", "-A", "config", "worker",
                    "-Q", "delivery,default",
                    "-P", self.args.pool, "-c", str(self.args.concurrency),
                    "-n", f"bench{i}@%h",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "--loglevel", self.args.worker_loglevel,
                ],
                env=self.env,
                log_path=self.tmp / f"celery-{i}.log",
                stop_signal=signal.SIGQUIT,
            )  # fmt: skip
            self.monitor.add_root(f"celery {i}", proc.pid)
            procs.append(proc)
        return procs

    def wait_workers(self, procs: list[subprocess.Popen], deadline: float) -> None:
        """Until every worker answers a ping (embedded: has bound its control queue, see ready_workers)."""
        from celery import Celery

        app = None if self.embedded else Celery("bench-ping", broker=self.args.broker_url)
        want = {f"bench{i}@" for i in range(1, len(procs) + 1)}
        seen: set[str] = set()
        try:
            while time.monotonic() < deadline:
                for i, proc in enumerate(procs, 1):
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"celery worker {i} exited ({proc.returncode}):\n{tail(self.tmp / f'celery-{i}.log')}"
                        )
                if app is None:
                    seen = self.ready_workers()
                    time.sleep(0.1)
                else:
                    seen |= {
                        name.split("@", 1)[0] + "@" for reply in app.control.ping(timeout=0.5) or [] for name in reply
                    }
                if want <= seen:
                    return
            raise RuntimeError(f"celery workers not ready in time (ready: {sorted(seen)})")
        finally:
            if app is not None:
                app.close()

    def ready_workers(self) -> set[str]:
        """Embedded: the workers whose pidbox queue is bound in the filesystem transport's control folder. (No
        ping: kombu's filesystem transport truncates an exchange file before it locks it, so a process writing
        one while another reads it can kill the reader with a JSONDecodeError; reading here writes nothing.)"""
        path = self.tmp / "data" / "broker" / "control" / "celery.pidbox.exchange"
        try:
            bindings = json.loads(path.read_text())
        except (OSError, ValueError):
            return set()
        return {queue.split("@", 1)[0] + "@" for _, _, queue in bindings}

    def provision(self, *options: str) -> dict:
        """Organization `Bench` with sender domain bench.example, verified: `manage.py provision` (plus
        `options`), every record it asks for published in the loopback DNS, then `provision --verify`."""
        assert self.dns is not None
        base = ("provision", "--org", "Bench", "--domain", SENDER_DOMAIN, "--json")
        provisioned = json.loads(self.manage(*base, *options, log_name="provision"))
        for record in provisioned["dns_records"]:
            self.dns.add(record["name"], record["type"], record["value"], ttl=3600)
        verified = json.loads(self.manage(*base, "--no-api-key", "--verify", log_name="verify"))
        if not verified.get("verified", {}).get(SENDER_DOMAIN):
            failing = [c for c in verified.get("checks", {}).get(SENDER_DOMAIN, []) if c.get("status") != "ok"]
            raise RuntimeError(f"{SENDER_DOMAIN} did not verify: {failing}")
        return provisioned

    def setup_backend(self) -> None:
        """Environment, database, broker, DNS and sink: everything before the front end and the workers."""
        self.env = self.base_env()
        (self.tmp / "data").mkdir()
        self.monitor.start()
        self.prepare_database()
        self.flush_redis()
        self.start_dns()
        sink_port = self.start_sink()
        assert self.dns is not None
        self.env.update(
            POSTWERK_DNS_SERVERS=f"{DNS_HOST}:{self.dns.port}",
            POSTWERK_SMTP_DELIVERY_PORT=str(sink_port),
        )
        log(f"DNS on {DNS_HOST}:{self.dns.port}, sink on {SINK_HOST}:{sink_port}")

    # ..... measurements

    def sink_value(self, slot: int) -> float:
        if self.smtp_sink is not None:
            return self.smtp_sink.value(slot)
        assert self.sink_stats is not None
        return self.sink_stats[slot]

    def check_sink(self, load: Load, *, dkim: bool) -> None:
        """smtp-sink only: read every dumped message (recipients, duplicates, times; DKIM of a sample when
        `dkim`), after the CPU snapshot so that the reading is not in the figures."""
        if self.smtp_sink is None:
            return
        from bench import mta

        txt = mta.txt_lookup(DNS_HOST, self.dns.port) if dkim and self.dns is not None else None
        load.sink_check = self.smtp_sink.analyze(dkim_sample=self.args.dkim_sample if dkim else None, txt=txt)

    def pg_counters(self) -> dict[str, int]:
        if self.embedded:
            return {}
        name = urlsplit(self.args.database_url).path.lstrip("/")
        with self.db_connect("postgres") as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT sessions, xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched "
                "FROM pg_stat_database WHERE datname = %s",
                [name],
            ).fetchone()
        keys = ("sessions", "commits", "rollbacks", "rows_inserted", "rows_updated", "rows_fetched")
        return dict(zip(keys, (int(v or 0) for v in row), strict=True)) if row else {}

    def redis_commands(self) -> int:
        if self.embedded:
            return 0
        import redis

        client = redis.Redis.from_url(self.args.broker_url)
        try:
            return int(client.info("stats")["total_commands_processed"])
        finally:
            client.close()

    def recipient_states(self, conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
        rows = conn.execute("SELECT state, count(*) FROM sending_recipient GROUP BY state").fetchall()
        return {state: int(n) for state, n in rows}

    def check_quiet(self) -> None:
        """Let pg_stat settle after the warm-up so the deltas cover the run only, and see whether anything
        else keeps the machine busy: on a shared machine the figures would be distorted."""
        before = system_cpu_ticks()
        time.sleep(1.0)
        busy = (system_cpu_ticks() - before) / CLK_TCK
        self.quiet_busy = round(busy, 2)
        if busy > 0.25:
            log(f"warning: the machine was {100 * busy:.0f}% busy (of one core) just before the load; is it quiet?")

    def start_load(self) -> Load:
        """Counters before the load; call right before the first message goes out."""
        load = Load(pg_before=self.pg_counters(), redis_before=self.redis_commands())
        load.cpu_before = self.monitor.cpu_snapshot()
        return load

    def wait_delivery(
        self,
        load: Load,
        *,
        sending: Callable[[], bool],
        accepted_live: Callable[[], int],
        accepted_total: Callable[[], int],
        front: str,
    ) -> int:
        """Poll the sink until the senders are done and every accepted recipient arrived (or the timeout);
        record the timeline. `accepted_live` counts as the load goes; `accepted_total` once sending is over.
        Returns the recipients expected at the sink."""
        a = self.args
        expected_max = a.messages * getattr(a, "recipients", 1)
        timeout = a.timeout or max(300.0, expected_max * 0.2)
        deadline = load.t0 + timeout
        last_log, done, expected = load.t0, False, expected_max
        stall = getattr(a, "stall", 120.0)
        progress, done_at = (0, load.t0), load.t0  # (delivered, when it last grew); when the senders finished
        while True:
            now = time.monotonic()
            delivered = int(self.sink_value(sinkmod.UNIQUE))
            if delivered > progress[0]:
                progress = (delivered, now)
            if not load.timeline or now - load.t0 - load.timeline[-1]["t"] >= 0.5:
                load.timeline.append(
                    {"t": round(now - load.t0, 3), "accepted": accepted_live(), "delivered": delivered}
                )
            alive = sending()
            if not alive and not done:
                done, done_at = True, now
                expected = accepted_total()
                log(f"{front} done: {expected} accepted in {now - load.t0:.2f} s")
            if not alive and delivered >= expected:
                break
            if now > deadline:
                log(f"timed out after {timeout:.0f} s waiting for delivery ({delivered}/{expected})")
                break
            if done and stall and now - max(progress[1], done_at) > stall:
                log(f"stopped waiting: nothing new at the sink for {stall:.0f} s ({delivered}/{expected})")
                break
            if now - last_log >= 2:
                log(f"accepted {accepted_live()}/{a.messages}, delivered {delivered}/{expected_max}")
                last_log = now
                if self.dead_processes():  # a server or worker died: what it held may never arrive
                    log(f"stopped waiting: {self.dead_processes()} exited during the run")
                    break
            time.sleep(0.02)
        load.sink_done = time.monotonic()
        return expected

    def dead_processes(self) -> list[str]:
        """Processes this run started that exited although they should run to the end (not the load
        generators or profilers, which end by themselves)."""
        return [
            f"{label} (exit {proc.returncode})"
            for label, proc, _ in self.procs.popens
            if not label.startswith(("smtp-source", "py-spy")) and proc.poll() is not None
        ]

    def finish_load(self, load: Load, expected: int) -> None:
        """The sink has everything: wait for the database to say so too, then take the closing figures."""
        # Each worker writes `delivered` just after its SMTP transaction.
        db_deadline = time.monotonic() + 30
        with self.db_connect() as conn:
            while True:
                load.states = self.recipient_states(conn)
                if load.states.get("delivered", 0) >= expected or time.monotonic() > db_deadline:
                    break
                time.sleep(0.05)
            load.db_done = time.monotonic()
            load.cpu_after = self.monitor.cpu_snapshot()
            self.monitor.sample()
            if self.embedded:  # SQLite stores UTC text timestamps; julianday() is in days
                seconds = "(julianday(delivered_at) - julianday(created_at)) * 86400.0"
            else:
                seconds = "extract(epoch FROM delivered_at - created_at)"
            lags = [float(v) for (v,) in conn.execute(
                f"SELECT {seconds} FROM sending_recipient WHERE state = 'delivered'"  # noqa: S608 (no input)
            ).fetchall()]  # fmt: skip
            load.lag = lag_summary(lags)
            load.messages_in_db = conn.execute("SELECT count(*) FROM sending_message").fetchone()[0]
            load.events = dict(conn.execute("SELECT type, count(*) FROM sending_event GROUP BY type").fetchall())
            load.max_attempts = conn.execute("SELECT max(attempts) FROM sending_recipient").fetchone()[0]
        if not self.embedded:
            time.sleep(1.1)  # pg_stat flushes at most once a second per backend
        load.pg_after, load.redis_after = self.pg_counters(), self.redis_commands()
        self.check_sink(load, dkim=True)

    # ..... report

    def resources(self, load: Load, first_start: float, delivered: int) -> tuple[float, list[dict], list[dict]]:
        """(window seconds, CPU/RSS per group, per process) from the first message to the end of the run."""
        window = max(1e-9, max(load.db_done, load.sink_done) - first_start)
        cpu = cpu_delta(load.cpu_before, load.cpu_after)
        machine = cpu.pop(SYSTEM, 0.0)
        # Whatever the machine did besides our trees and the external servers: kernel network work on
        # loopback, and anything else running here (which would distort the figures).
        cpu[OTHER] = max(0.0, machine - sum(cpu.values()))
        cpu_pid = cpu_delta_per_pid(load.cpu_before, load.cpu_after)

        processes = [
            {
                "role": t.label,
                "pid": t.pid,
                "peak_rss_mb": round(t.peak_rss_kb / 1024, 1),
                "cpu_s": round(cpu_pid.get(t.pid, 0.0), 2),
            }
            for t in sorted(self.monitor.tracked.values(), key=lambda t: (t.group, t.pid))
        ]
        driver_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        groups = []
        for group, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
            peak_kb = driver_rss_kb if group == DRIVER else self.monitor.group_peak_kb.get(group, 0)
            groups.append(
                {
                    "group": group,
                    "cpu_s": round(seconds, 2),
                    "cpu_pct_of_one_core": round(100 * seconds / window, 1),
                    "cpu_ms_per_message": round(1000 * seconds / max(1, delivered), 2),
                    "peak_rss_mb": round(peak_kb / 1024, 1) or None,
                }
            )
        return window, groups, processes

    def delivery(self, load: Load, first_start: float, last_accepted: float, tail_key: str) -> dict:
        """The `delivery` section: sink figures and accepted -> delivered lag; `tail_key` names the tail."""
        delivered = int(self.sink_value(sinkmod.UNIQUE))
        last_unique_at = self.sink_value(sinkmod.LAST_UNIQUE_AT)
        delivered_seconds = (last_unique_at - first_start) if delivered else 0.0
        sink_rcpts = int(self.sink_value(sinkmod.RECIPIENTS))
        lag = load.lag
        pct = lag[0] if lag and lag[0] else [None, None, None]
        return {
            "delivered": delivered,
            "seconds": round(delivered_seconds, 3),
            "delivered_per_s": round(delivered / delivered_seconds, 1) if delivered_seconds > 0 else None,
            tail_key: round(last_unique_at - last_accepted, 3) if delivered else None,
            "db_all_delivered_s": round(load.db_done - first_start, 3),
            "first_delivery_after_s": (
                round(self.sink_value(sinkmod.FIRST_AT) - first_start, 3) if delivered else None
            ),
            "accept_to_delivered_s": {
                "p50": _r(pct[0]),
                "p90": _r(pct[1]),
                "p99": _r(pct[2]),
                "max": _r(lag[1] if lag else None),
            },
            "sink": {
                "kind": "smtp-sink" if self.smtp_sink is not None else "python",
                "messages": int(self.sink_value(sinkmod.MESSAGES)),
                "recipients": sink_rcpts,
                "duplicates": sink_rcpts - delivered,
                "smtp_connections": int(self.sink_value(sinkmod.CONNECTIONS)),
                "mb": round(self.sink_value(sinkmod.BYTES) / 1e6, 2),
                **{k: v for k, v in load.sink_check.items() if k in ("duplicate_message_ids", "dkim", "dump_dir")},
            },
        }

    def log_problems(self) -> dict[str, int]:
        """Lines in the process logs of this run that say something went wrong: SQLite lock errors (which the
        embedded mode must never show), tracebacks, ERROR log lines."""
        patterns = {"database_locked": "database is locked", "tracebacks": "Traceback (most recent", "errors": "ERROR"}
        found = dict.fromkeys(patterns, 0)
        for path in self.tmp.glob("*.log"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for key, needle in patterns.items():
                found[key] += text.count(needle)
        return found

    def sections(self, load: Load, delivery: dict, ok: bool, resources: tuple[float, list[dict], list[dict]]) -> dict:
        """The report sections after the benchmark's own ("config" and its front end's): `delivery`, the
        check (`ok` is the benchmark's verdict, which also sets the exit status), PostgreSQL and Redis
        deltas, `resources` (from resources()), the timeline, profiles and the log folder."""
        window, groups, processes = resources
        problems = self.log_problems()
        sink_problems = dumped_sink_problems(delivery["sink"])
        died = self.dead_processes()
        ok = ok and not sink_problems and not problems["database_locked"] and not died
        self.failed = not ok
        return {
            "delivery": delivery,
            "check": {
                "ok": ok,
                "died": died,
                "sink_problems": sink_problems,
                "log_problems": problems,
                "recipient_states": load.states,
                "messages_in_db": int(load.messages_in_db),
                "events": {k: int(v) for k, v in load.events.items()},
                "max_attempts": load.max_attempts,
            },
            "postgres": {k: load.pg_after.get(k, 0) - load.pg_before.get(k, 0) for k in load.pg_after},
            "redis_commands": load.redis_after - load.redis_before,
            "window_s": round(window, 3),
            "busy_before_load_cpu_s": self.quiet_busy,
            "cpu_groups": groups,
            "processes": processes,
            "timeline": load.timeline,
            "profile": load.profile,
            "logs": str(self.tmp),
        }

    # ..... profiling

    def start_profilers(self) -> list[tuple[str, Path, subprocess.Popen]]:
        spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not Path(spy).exists():
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        out_dir = Path(self.args.profile).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        started = []
        for group in dict.fromkeys(g for g, _ in self.monitor.roots):
            if group == "sink" or group.startswith("bench"):
                continue
            pid = next(p for g, p in self.monitor.roots if g == group)
            out = out_dir / f"{group.replace(' ', '-')}.txt"
            proc = self.procs.start(
                f"py-spy {group}",
                # --gil: only threads holding the GIL, i.e. where the CPU goes, not threads waiting on sockets.
                [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--nolineno", "--gil",
                 "--format", "raw", "--rate", "100", "--output", str(out)],
                env=dict(os.environ),
                log_path=self.tmp / f"py-spy-{group.replace(' ', '-')}.log",
                stop_signal=signal.SIGINT,
            )  # fmt: skip
            started.append((group, out, proc))
        time.sleep(1.0)  # let py-spy attach before the load starts
        return started

    def stop_profilers(self, profilers: list[tuple[str, Path, subprocess.Popen]]) -> dict:
        for _, _, proc in profilers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        summary = {}
        for group, out, proc in profilers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                log(f"py-spy for {group} did not stop")
                continue
            if out.exists():
                summary[group] = summarize_profile(out)
                summary[group]["file"] = str(out)
        return summary

    # ..... teardown

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        self.monitor.stop()
        self.stop_clients()
        self.procs.stop_all()
        if self.sink_proc is not None and self.sink_proc.is_alive():
            self.sink_proc.terminate()
            self.sink_proc.join(5)
            if self.sink_proc.is_alive():
                self.sink_proc.kill()
                self.sink_proc.join(5)
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        if self.smtp_sink is not None:
            self.smtp_sink.cleanup(keep=self.args.keep_logs or self.failed)
        if self.args.keep_logs or self.failed:
            log(f"logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stop_clients(self) -> None:
        """Stop load-generating processes of the benchmark's own, if it has any."""


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "deliver (sending/delivery/deliver.py)" or "<module> (celery/__main__.py)".
    return frame.strip()


def summarize_profile(path: Path, top: int = 12) -> dict:
    """Self and inclusive sample shares per function from a py-spy raw (collapsed stacks) file."""
    self_samples: dict[str, int] = {}
    incl_samples: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";")]
        # The first frame is the process/thread label that py-spy adds; it is not a function.
        if frames and not frames[0].endswith(")"):
            frames = frames[1:]
        if not frames:
            continue
        total += n
        self_samples[frames[-1]] = self_samples.get(frames[-1], 0) + n
        for f in set(frames):
            incl_samples[f] = incl_samples.get(f, 0) + n

    def ranked(d: dict[str, int], keep) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
        items = [(f, n) for f, n in d.items() if keep(f)]
        items.sort(key=lambda kv: -kv[1])
        return [(f, round(100 * n / total, 1)) for f, n in items[:top]] if total else []

    app_dirs = ("(sending/", "(accounts/", "(config/")
    return {
        "samples": total,
        "self_top": ranked(self_samples, lambda f: True),
        "app_inclusive_top": ranked(incl_samples, lambda f: any(d in f for d in app_dirs)),
    }


def dumped_sink_problems(sink: dict) -> list[str]:
    """What smtp-sink's dumps say is wrong beyond the counts each benchmark checks: a Message-ID seen twice,
    a message without a DKIM signature, a sampled signature that does not verify."""
    out = []
    if sink.get("duplicate_message_ids"):
        out.append(f"{sink['duplicate_message_ids']} Message-IDs seen more than once")
    dkim = sink.get("dkim")
    if dkim:
        if dkim["signed"] < sink["messages"]:
            out.append(f"{sink['messages'] - dkim['signed']} messages without a DKIM-Signature")
        if dkim["failed"] or dkim["verified"] < dkim["sampled"]:
            out.append(
                f"{dkim['failed']} of {dkim['sampled']} sampled DKIM signatures failed, e.g. {dkim['failures'][:1]}"
            )
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# --- output -------------------------------------------------------------------------------------------


def sayer(out) -> Callable[..., None]:  # type: ignore[no-untyped-def]
    """print() to `out`, one line (or an empty one) per call."""

    def say(line: str = "") -> None:
        print(line, file=out)

    return say


def _ms(d: dict, key: str) -> str:
    v = d.get(key)
    return "-" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def spread(d: dict, unit: str = " ms") -> str:
    return f"p90 {_ms(d, 'p90')}  p99 {_ms(d, 'p99')}  max {_ms(d, 'max')}{unit}"


def latency_row(name: str, d: dict, note: str = "") -> tuple[str, str, str]:
    return (name, f"p50 {_ms(d, 'p50')} ms", spread(d) + note)


def delivery_rows(r: dict, *, front: str, start: str, unit: str = "message") -> dict[str, tuple[str, str, str]]:
    """The report rows about delivery, PostgreSQL and Redis, by name; `front` names the entry point ("API"),
    `start` the moment the clock starts ("first request"), `unit` what the sink counts."""
    c, dl = r["config"], r["delivery"]
    acc, pg, sink = dl["accept_to_delivered_s"], r["postgres"], dl["sink"]
    tail_key = next(k for k in dl if k.startswith("tail_after_"))
    return {
        "delivered": (
            "Delivered/s (end to end)",
            f"{dl['delivered_per_s']}",
            f"{dl['delivered']} in {dl['seconds']} s ({start} -> {unit} N at the sink)",
        ),
        "tail": (
            f"Delivery tail after {front}",
            f"{dl[tail_key]} s",
            f"first delivery {dl['first_delivery_after_s']} s after the {start}",
        ),
        "db": ("DB all delivered", f"{dl['db_all_delivered_s']} s", f"after the {start}"),
        "lag": (
            "Accepted -> delivered",
            f"p50 {_ms(acc, 'p50')} s",
            spread(acc, " s") + " (DB created_at -> delivered_at)",
        ),
        "sink": (
            f"Sink ({sink.get('kind', 'python')})",
            f"{sink['messages']} msgs",
            f"{sink['smtp_connections']} SMTP sessions, {sink['duplicates']} duplicates, {sink['mb']} MB"
            + dkim_note(sink),
        ),
        "postgres": (
            "PostgreSQL (run)" if not c.get("embedded") else "SQLite (embedded)",
            f"{pg.get('commits', 0)} commits",
            f"{pg.get('sessions', 0)} new sessions, {pg.get('rows_inserted', 0)} rows inserted, "
            f"{pg.get('rows_updated', 0)} updated",
        ),
        "redis": (
            "Redis (run)" if not c.get("embedded") else "Broker: filesystem",
            f"{r['redis_commands']} commands",
            f"{r['redis_commands'] / max(1, c['messages']):.1f} per message",
        ),
    }


def dkim_note(sink: dict) -> str:
    dkim = sink.get("dkim")
    if not dkim:
        return ""
    return (
        f"; DKIM-Signature on {dkim['signed']}/{sink['messages']}, "
        f"{dkim['verified']}/{dkim['sampled']} sampled verified"
    )


def print_rows(rows: list[tuple[str, str, str]], say: Callable[[str], None]) -> None:
    w = max(len(k) for k, _, _ in rows)
    for k, v, extra in rows:
        say(f"  {k:<{w}}  {v:>16}   {extra}")
    say()


def print_resources(r: dict, say: Callable[[str], None], *, want: int) -> None:
    """CPU and RSS tables, profiles, the busy-machine warning and the final check (want: recipients)."""
    c, dl, chk = r["config"], r["delivery"], r["check"]
    say(f"  CPU during the run ({r['window_s']} s window; 100% = one core, {c['cpus']} cores available):")
    say(f"    {'group':<32} {'CPU s':>7} {'CPU %':>7} {'ms/msg':>7} {'peak RSS':>10}")
    for g in r["cpu_groups"]:
        rss = f"{g['peak_rss_mb']} MB" if g["peak_rss_mb"] else "-"
        say(
            f"    {g['group']:<32} {g['cpu_s']:>7.2f} {g['cpu_pct_of_one_core']:>6.1f}% "
            f"{g['cpu_ms_per_message']:>7.2f} {rss:>10}"
        )
    total = sum(g["cpu_s"] for g in r["cpu_groups"])
    per_msg = 1000 * total / max(1, dl["delivered"])
    say(f"    {'total':<32} {total:>7.2f} {100 * total / r['window_s']:>6.1f}% {per_msg:>7.2f}")
    say("    (a group's peak RSS: largest sum over its process tree in one sample; shared pages count per process)")
    say()
    say(f"    {'process':<32} {'pid':>7} {'peak RSS':>10} {'CPU s':>7}")
    for p in r["processes"]:
        say(f"    {p['role']:<32} {p['pid']:>7} {p['peak_rss_mb']:>7.1f} MB {p['cpu_s']:>7.2f}")
    say()
    for group, prof in (r.get("profile") or {}).items():
        say(f"  py-spy {group}: {prof['samples']} samples ({prof['file']})")
        say("    hottest functions (self):")
        for f, share in prof["self_top"][:10]:
            say(f"      {share:5.1f}%  {f}")
        say("    application functions (inclusive):")
        for f, share in prof["app_inclusive_top"][:10]:
            say(f"      {share:5.1f}%  {f}")
        say()
    other = next((g for g in r["cpu_groups"] if g["group"] == OTHER), None)
    if other and other["cpu_pct_of_one_core"] > 25:
        say(
            f"  WARNING: {other['cpu_s']} CPU-s ({other['cpu_pct_of_one_core']}% of a core) went to processes this "
            "benchmark did not start; the figures are distorted. Run it on a quiet machine."
        )
        say()
    states = ", ".join(f"{k}={v}" for k, v in sorted(chk["recipient_states"].items()))
    verdict = "OK" if chk["ok"] else "FAILED"
    say(
        f"  Final check: {verdict}: recipients {states or 'none'} (want delivered={want}); "
        f"messages {chk['messages_in_db']}; events {chk['events']}; max attempts {chk['max_attempts']}"
    )
    logs = chk.get("log_problems") or {}
    say(
        f"    logs: {logs.get('database_locked', 0)} 'database is locked', {logs.get('tracebacks', 0)} tracebacks, "
        f"{logs.get('errors', 0)} ERROR lines"
        + "".join(f"; {p}" for p in chk.get("sink_problems", []))
        + "".join(f"; DIED: {d}" for d in chk.get("died", []))
    )
    say()


# --- entry point --------------------------------------------------------------------------------------


def run_main(bench: BaseBench, print_report: Callable[..., None]) -> int:
    """Run `bench` with cleanup on exit, Ctrl-C, SIGTERM or error; print the report; the exit status."""
    args = bench.args
    atexit.register(bench.cleanup)

    def on_signal(signum, frame):  # type: ignore[no-untyped-def]
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        result = bench.run()
    except KeyboardInterrupt:
        log("interrupted; stopping everything this run started")
        return 130
    except Exception as exc:
        log(f"error: {exc}")
        for path in sorted(bench.tmp.glob("*.log")):
            log(f"--- {path.name} (tail) ---\n{tail(path, 15)}")
        return 1
    finally:
        bench.cleanup()
    if args.json:
        # The table goes to stderr so that stdout is exactly one JSON document.
        print_report(result, out=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if result["check"]["ok"] else 1
