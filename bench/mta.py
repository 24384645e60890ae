"""Postfix's tools in the benchmarks: `smtp-sink` as the recipient MX, `smtp-source` as the SMTP load, and a
private Postfix instance to compare with (Debian's `postfix` package: apt-get install postfix).

- SmtpSink: smtp-sink dumping every transaction to a file of its own; the files are read after the run to
  count every recipient, find duplicates (recipient and Message-ID), take delivery times (file mtimes) and
  verify DKIM signatures.
- SmtpSourceFleet: smtp-source processes, one per recipient domain.
- PrivatePostfix: a throwaway Postfix (own config, queue and data directories) relaying to the sink.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import sink as sinkmod
from bench.harness import SENDER_DOMAIN, Processes, ProcessMonitor, log, read_stat, tail

TOOL_DIRS = ("/usr/sbin", "/usr/bin", "/usr/lib/postfix/sbin")
SINK_HOSTNAME = "sink.bench.example"
CLIENT_HOSTNAME = "client.bench.example"
SENDER = f"orders@{SENDER_DOMAIN}"


def tool(name: str) -> str:
    """Path of one of Postfix's programs (/usr/sbin is often not on a non-root PATH)."""
    found = shutil.which(name) or next((f"{d}/{name}" for d in TOOL_DIRS if Path(d, name).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} not found: apt-get install --no-install-recommends postfix")
    return found


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, proc: subprocess.Popen | None, log_path: Path, what: str, timeout=15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{tail(log_path)}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {host}:{port} in time:\n{tail(log_path)}")


def _tail_bytes(path: Path, size: int = 256) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read()
    except OSError:
        return b""


# --- smtp-sink ----------------------------------------------------------------------------------------


class SmtpSink:
    """Postfix's smtp-sink as the recipient MX: one C process, event-driven, about 6,000 messages/s on this
    kind of machine, so it never limits a sender. `-d` dumps each transaction to a file of its own (created
    at MAIL, closed when the final dot arrives, before the 250; in /dev/shm when there is one, so no disk
    writes compete with the queue fsyncs), `-c` prints running counters to its log.

    The counters show progress during the run (value()); after it, analyze() reads every file: one
    recipient key per RCPT (duplicates), Message-IDs (duplicates), mtimes (first and last delivery), and
    verifies the DKIM signatures of a sample. Slots as in bench/sink.py, so the harness reads either sink
    the same way."""

    COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")

    def __init__(self, host: str, log_dir: Path, *, per_message: int = 1) -> None:
        self.host = host
        self.per_message = per_message  # recipients per message, for the live estimate
        self.log_path = log_dir / "smtp-sink.log"
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else log_dir
        self.dump_dir = Path(tempfile.mkdtemp(prefix="postwerk-sink-", dir=base))
        self.port = 0
        self.stats = [0.0] * sinkmod.SLOTS
        self.analyzed = False
        self._live_at = 0.0

    def start(self, procs: Processes, monitor: ProcessMonitor) -> int:
        self.port = free_port(self.host)
        # -a -C -F: no AUTH, XCLIENT, XFORWARD in the EHLO reply (nobody uses them; keeps both clients plain).
        argv = [tool("smtp-sink"), "-c", "-a", "-C", "-F", "-h", SINK_HOSTNAME, "-d", f"{self.dump_dir}/m."]
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without -u
            shutil.chown(self.dump_dir, "nobody")
            argv += ["-u", "nobody"]
        argv += [f"{self.host}:{self.port}", "1024"]
        proc = procs.start("smtp-sink", argv, env=dict(os.environ), log_path=self.log_path)
        monitor.add_root("smtp-sink", proc.pid)
        wait_port(self.host, self.port, proc, self.log_path, "smtp-sink")
        return self.port

    def counters(self) -> tuple[int, int]:
        """(completed messages, ended sessions) from the last `sess= quit= mesg=` record smtp-sink printed."""
        found = self.COUNTERS.findall(_tail_bytes(self.log_path))
        return (int(found[-1][2]), int(found[-1][0])) if found else (0, 0)

    def value(self, slot: int) -> float:
        if not self.analyzed and time.monotonic() - self._live_at > 0.1:
            messages, sessions = self.counters()
            s = self.stats
            s[sinkmod.MESSAGES] = messages
            s[sinkmod.RECIPIENTS] = s[sinkmod.UNIQUE] = messages * self.per_message
            s[sinkmod.CONNECTIONS] = sessions
            self._live_at = time.monotonic()
        return self.stats[slot]

    def analyze(self, *, dkim_sample: int | None, txt: Callable | None) -> dict:
        """Read every dumped message. `dkim_sample`: None = no DKIM expected; 0 = verify all; N = a random N."""
        offset = time.time() - time.monotonic()  # file mtimes are wall-clock; the harness's clock is monotonic
        files = sorted((e.stat().st_mtime_ns, e.path, e.stat().st_size) for e in os.scandir(self.dump_dir))
        seen: set[bytes] = set()
        ids: set[bytes] = set()
        recipients = dup_ids = 0
        last_unique = 0.0
        signed: list[str] = []
        for mtime_ns, path, _ in files:
            with open(path, "rb") as f:
                head = f.read(32768).split(b"\n\n", 1)[0]
            new = False
            for rcpt in re.findall(rb"(?m)^X-Rcpt-Args: <?([^>\s]*)", head):
                recipients += 1
                if rcpt.lower() not in seen:
                    seen.add(rcpt.lower())
                    new = True
            if new:
                last_unique = mtime_ns / 1e9 - offset
            msg_id = re.search(rb"(?mi)^message-id:\s*(\S+)", head)
            if msg_id:
                dup_ids += msg_id.group(1) in ids
                ids.add(msg_id.group(1))
            if re.search(rb"(?mi)^dkim-signature:", head):
                signed.append(path)
        messages, sessions = self.counters()
        s = self.stats
        s[sinkmod.MESSAGES], s[sinkmod.RECIPIENTS], s[sinkmod.UNIQUE] = len(files), recipients, len(seen)
        s[sinkmod.FIRST_AT] = files[0][0] / 1e9 - offset if files else 0.0
        s[sinkmod.LAST_AT] = files[-1][0] / 1e9 - offset if files else 0.0
        s[sinkmod.LAST_UNIQUE_AT] = last_unique
        s[sinkmod.BYTES] = sum(size for _, _, size in files)
        s[sinkmod.CONNECTIONS] = sessions
        self.analyzed = True
        out: dict = {"duplicate_message_ids": dup_ids, "dump_dir": str(self.dump_dir), "counted_by_sink": messages}
        if dkim_sample is not None:
            out["dkim"] = verify_dkim(signed, dkim_sample, txt)
        return out

    def cleanup(self, *, keep: bool) -> None:
        if keep:
            log(f"smtp-sink dumps kept in {self.dump_dir}")
        else:
            shutil.rmtree(self.dump_dir, ignore_errors=True)


def dumped_message(raw: bytes) -> bytes:
    """A message as its client sent it, from an smtp-sink dump: without smtp-sink's own header lines (they
    end with its three-line Received header) and the empty line it appends, CRLF line ends again. (smtp-sink
    drops every CR and undoes dot-stuffing as it writes.)"""
    lines = raw.split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"\tby ") and b"(smtp-sink)" in line) + 2
    return b"\r\n".join(lines[start:]).rstrip(b"\r\n") + b"\r\n"


def verify_dkim(paths: list[str], sample: int, txt: Callable | None) -> dict:
    import dkim

    chosen = paths if sample <= 0 or sample >= len(paths) else random.sample(paths, sample)
    verified, failures = 0, []
    for path in chosen:
        msg = dumped_message(Path(path).read_bytes())
        try:
            ok = dkim.verify(msg, dnsfunc=txt)
        except Exception as exc:  # dkimpy raises on malformed signatures
            ok, why = False, repr(exc)
        else:
            why = "signature does not verify"
        if ok:
            verified += 1
        elif len(failures) < 5:
            failures.append(f"{path}: {why}")
    return {
        "signed": len(paths),
        "sampled": len(chosen),
        "verified": verified,
        "failed": len(chosen) - verified,
        "failures": failures,
    }


def txt_lookup(host: str, port: int) -> Callable:
    """dkimpy's dnsfunc, asking the loopback DNS server (where the run published the DKIM keys)."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [host], port

    def txt(name, timeout=5):  # type: ignore[no-untyped-def]
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(answer[0].strings)

    return txt


# --- smtp-source --------------------------------------------------------------------------------------


class SmtpSourceFleet:
    """Postfix's smtp-source as the SMTP load. One smtp-source sends every message to one recipient address
    (`-t`; `-N` prefixes a sequence number so that each is unique, e.g. 17rcpt@d3.bench.example), so there
    is one process per recipient domain, with the sessions (-s) and messages (-m) split evenly over them.
    Messages: -l body bytes after smtp-source's own From/To/Date/Message-Id headers (Message-Id
    <pid.session.n@host>, unique), -S subject, -f the sender; -d keeps each session open for all its messages
    (unless `reconnect`: one message per session). `-c` prints a running count of completed DATA commands."""

    def __init__(
        self,
        *,
        messages: int,
        sessions: int,
        domains: int,
        body_size: int,
        recipients: int = 1,
        reconnect: bool = False,
        log_dir: Path,
    ) -> None:
        if sessions < domains:
            raise ValueError("smtp-source sends to one domain per process: --sessions must be at least --domains")
        self.plan = [
            (k, sessions // domains + (k < sessions % domains), messages // domains + (k < messages % domains))
            for k in range(domains)
        ]
        self.body_size, self.recipients, self.reconnect, self.log_dir = body_size, recipients, reconnect, log_dir
        self.started: list[tuple[int, subprocess.Popen, Path]] = []  # (messages, process, log)
        self.ended: dict[int, float] = {}  # pid -> when seen exited
        self.t0 = 0.0
        self._checked = 0.0

    def start(self, procs: Processes, monitor: ProcessMonitor, host: str, port: int) -> None:
        binary = tool("smtp-source")
        self.t0 = time.monotonic()
        for k, sessions, messages in self.plan:
            if not messages:
                continue
            argv = [binary, "-c", "-s", str(sessions), "-m", str(messages), "-l", str(self.body_size),
                    "-r", str(self.recipients), "-N", "-M", CLIENT_HOSTNAME, "-f", SENDER,
                    "-t", f"rcpt@d{k}.{SENDER_DOMAIN}", "-S", "Your order has shipped"]  # fmt: skip
            if not self.reconnect:
                argv.append("-d")
            log_path = self.log_dir / f"smtp-source-d{k}.log"
            proc = procs.start(f"smtp-source d{k}", [*argv, f"{host}:{port}"], env=dict(os.environ), log_path=log_path)
            monitor.add_root("smtp-source", proc.pid, label=f"smtp-source d{k} ({sessions} sessions)")
            self.started.append((messages, proc, log_path))

    def running(self) -> bool:
        """Whether any smtp-source is still sending. A finished one is left a zombie (not reaped) until
        result(), so that the harness's CPU snapshot still sees its CPU time."""
        now = time.monotonic()
        if now - self._checked < 0.1:  # cheap polling; the exact end time comes from the logs (result())
            return True
        self._checked = now
        for _, proc, _ in self.started:
            if proc.pid not in self.ended:
                stat = read_stat(proc.pid)
                if stat is None or stat[2][0] in ("Z", "X"):
                    self.ended[proc.pid] = now
        return len(self.ended) < len(self.started)

    @staticmethod
    def count(log_path: Path) -> int:
        """The last number `smtp-source -c` printed (records end in CR; error messages are text lines)."""
        tokens = re.split(rb"[\r\n]+", _tail_bytes(log_path, 64))
        return next((int(t) for t in reversed(tokens) if t.isdigit()), 0)

    def accepted_live(self) -> int:
        return sum(self.count(log_path) for _, _, log_path in self.started)

    def result(self) -> dict:
        """accepted, errors (a failed process's log), first_start and last_ok: when the last count was written
        (the log's mtime: smtp-source prints the count as each DATA completes)."""
        errors, last = [], 0.0
        offset = time.time() - time.monotonic()
        for messages, proc, log_path in self.started:
            proc.wait()
            last = max(last, log_path.stat().st_mtime - offset)
            if proc.returncode != 0 or self.count(log_path) != messages:
                errors.append(f"{' '.join(proc.args[-3:])}: exit {proc.returncode}, {tail(log_path, 3)!r}")
        return {
            "accepted": self.accepted_live(),
            "processes": len(self.started),
            "sessions": sum(s for _, s, m in self.plan if m),
            "errors": errors,
            "first_start": self.t0,
            "last_ok": last or self.t0,
        }


# --- a private Postfix --------------------------------------------------------------------------------


class PrivatePostfix:
    """A throwaway Postfix under `root` (its own config_directory, queue_directory and data_directory; never
    the system instance), smtpd on a free 127.0.0.1 port, relaying everything to `relay` (the sink) with
    Postfix's defaults otherwise: queue files fsynced, 20 connections per destination, connection cache.

    The configuration is the working recipe of tests/data/bounces/generate_postfix.py, with its short retry
    and queue lifetimes put back to the defaults and the relay host and names set with `postconf`. Started
    with `postfix -c DIR start`; stopped with `postfix -c DIR stop` by a small guard process that this run
    starts, so that Postfix is stopped even when the driver is killed (the guard gets the parent-death signal)."""

    RESET = ("queue_run_delay", "minimal_backoff_time", "maximal_backoff_time", "delay_warning_time",
             "maximal_queue_lifetime", "bounce_queue_lifetime")  # fmt: skip
    DELIVERY = re.compile(r" to=<([^>]*)>,.* delay=([\d.]+),.* status=(\w+)")

    def __init__(self, root: Path, relay: tuple[str, int]) -> None:
        self.root, self.relay = root, relay
        self.conf = root / "conf"
        self.port = 0
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def postfix(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [tool("postfix"), "-c", str(self.conf), *argv], env=self.env, capture_output=True, text=True, timeout=60
        )

    def start(self, procs: Processes, monitor: ProcessMonitor) -> int:
        from tests.data.bounces.generate_postfix import write_postfix_config

        if os.geteuid() != 0:
            raise RuntimeError("a private Postfix instance needs root (postfix start, the postfix user)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the postfix user must reach its data and queue directories
        self.port = free_port("127.0.0.1")
        write_postfix_config(self.root, self.port, self.relay[1])
        postconf = [tool("postconf"), "-c", str(self.conf)]
        settings = [f"relayhost = [{self.relay[0]}]:{self.relay[1]}", "myhostname = mta.bench.example",
                    "mydomain = bench.example"]  # fmt: skip
        for argv in ([*postconf, "-e", *settings], [*postconf, "-X", *self.RESET]):
            subprocess.run(argv, env=self.env, check=True, capture_output=True, timeout=30)
        guard = (
            f"trap 'kill $! 2>/dev/null; {tool('postfix')} -c \"{self.conf}\" stop; exit 0' TERM; "
            "while :; do sleep 3600 & wait $!; done"
        )
        procs.start("postfix guard", ["sh", "-c", guard], env=self.env, log_path=self.root / "guard.log")
        started = self.postfix("start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed:\n{started.stdout}{started.stderr}\n{tail(self.maillog)}")
        master = int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
        monitor.add_root("postfix", master, by_name=True)
        wait_port("127.0.0.1", self.port, None, self.maillog, "postfix smtpd")
        return self.port

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    def deliveries(self, want: int, timeout: float = 15.0) -> tuple[dict[str, int], list[float], int]:
        """(count per status, delay of each sent recipient, queued messages) from Postfix's own log; waits
        until `want` recipients are logged sent (postlogd writes a little behind the deliveries)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.maillog.read_text(errors="replace") if self.maillog.exists() else ""
            statuses: dict[str, int] = {}
            delays = []
            for m in self.DELIVERY.finditer(text):
                statuses[m.group(3)] = statuses.get(m.group(3), 0) + 1
                if m.group(3) == "sent":
                    delays.append(float(m.group(2)))
            if len(delays) >= want or time.monotonic() > deadline:
                return statuses, delays, len(re.findall(r"postfix/qmgr\[\d+\]: \w+: from=<", text))
            time.sleep(0.2)
