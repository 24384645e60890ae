"""Every benchmark in bench/ starts, gets a few dozen messages through and exits 0 (issue 28).

The benchmarks are documented entry points (`make bench`, `bench-smtp`, `bench-soak`, `bench-throughput`) that
nothing else runs: `bench/soak.py` stopped at once when an option it borrows from smtp_ingest was added to the
other benchmarks only, and nobody noticed. Each runs here as the developer runs it, as a subprocess with --json,
at the smallest size that still goes through every part (servers, workers, DNS, sink, the final check).

Backend: the suite's own. The embedded run gives each benchmark --embedded (SQLite and the filesystem broker in
the benchmark's temporary folder). The PostgreSQL + Redis run gives them a database of their own beside the
test database (`<test database>_bench`, created by the benchmark, dropped at the end) and the suite's broker,
which the benchmarks flush: nothing else uses it while a test runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
MESSAGES = 30  # a few dozen: enough for every client, session and worker to carry some
# The fewest processes each benchmark accepts: start-up is most of a smoke run's time.
SMALL = ["--domains", "3", "--workers", "1", "--concurrency", "2"]
SMALL_WEB = ["--web-workers", "1", "--web-threads", "2"]


def embedded() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


@pytest.fixture(scope="module")
def backend() -> Iterator[list[str]]:
    """The benchmarks' backend options for this run of the suite (see the module docstring)."""
    if embedded():
        yield ["--embedded"]
        return
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        pytest.fail(f"the benchmarks need a Redis broker; CELERY_BROKER_URL is {broker}")
    db = settings.DATABASES["default"]
    name = f"{db.get('TEST', {}).get('NAME') or 'test_' + db['NAME']}_bench"
    url = urlsplit(os.environ["DATABASE_URL"])
    yield ["--database-url", urlunsplit(url._replace(path=f"/{name}")), "--broker-url", broker]
    import psycopg

    with psycopg.connect(urlunsplit(url._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_bench(script: str, *argv: str, tmp_path: Path, timeout: float = 240) -> dict:
    """Run bench/<script> --json; assert it exits 0 and return its JSON report."""
    log = tmp_path / f"{Path(script).stem}.log"
    with log.open("wb") as err:
        done = subprocess.run(
            [sys.executable, str(BENCH / script), "--json", *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    # Its own lines ("[bench hh:mm:ss] ...") say what failed; the tails of process logs it prints come after.
    lines = [line for line in log.read_text(errors="replace").splitlines() if "Applying " not in line]
    assert done.returncode == 0, f"bench/{script} exited {done.returncode}:\n" + "\n".join(lines[-60:])
    return json.loads(done.stdout)


@pytest.mark.worker
@pytest.mark.timeout(300)
def test_send_api_benchmark_delivers_every_message(backend, tmp_path):
    argv = ["--messages", str(MESSAGES), "--batch", "10", "--clients", "2", *SMALL, *SMALL_WEB, *backend]
    report = run_bench("send_api.py", *argv, tmp_path=tmp_path)
    assert report["api"]["accepted"] == MESSAGES
    assert report["delivery"]["delivered"] == MESSAGES
    assert report["check"]["recipient_states"] == {"delivered": MESSAGES}


@pytest.mark.worker
@pytest.mark.timeout(300)
def test_smtp_ingest_benchmark_delivers_every_message(backend, tmp_path):
    argv = ["--messages", str(MESSAGES), "--sessions", "3", "--per-session", "5", "--driver-procs", "1"]
    report = run_bench("smtp_ingest.py", *argv, *SMALL, *backend, tmp_path=tmp_path)
    assert report["smtp"]["accepted"] == MESSAGES
    assert report["delivery"]["delivered"] == MESSAGES
    assert report["check"]["recipient_states"] == {"delivered": MESSAGES}


@pytest.mark.worker
@pytest.mark.timeout(300)
def test_soak_benchmark_delivers_every_message(backend, tmp_path):
    # 3 s at 5/s through each front: up to 15 messages by the API and 15 by SMTP. Fewer when the machine is too
    # busy to keep the schedule (the soak stops at the end of its period, by design), but every one it sent
    # must be delivered.
    argv = ["--duration", "3", "--api-rate", "5", "--smtp-rate", "5", "--api-clients", "2", "--sessions", "2"]
    report = run_bench("soak.py", *argv, "--sample", "1", *SMALL, *SMALL_WEB, *backend, tmp_path=tmp_path)
    assert report["sent"]["api"] > 0
    assert report["sent"]["smtp"] > 0
    assert report["states"] == {"delivered": report["sent"]["api"] + report["sent"]["smtp"]}
    assert report["errors"] == 0
    assert report["checks"] == {
        "no_errors": True,
        "all_delivered": True,
        "rss_within_bound": True,
        "latency_stable": True,
    }


@pytest.mark.worker
@pytest.mark.timeout(420)
def test_throughput_benchmark_runs_every_path(backend, tmp_path):
    # Fail, never skip: CI runs as root, and a skip there would let this benchmark rot unnoticed again.
    if os.geteuid() != 0:
        pytest.fail("bench/throughput.py starts a private Postfix instance, which needs root: run the suite as root")
    # Postfix, the bare tool loop, and Postwerk's API and SMTP paths on this run's backend.
    postwerk = ["api-embedded", "smtp-embedded"] if embedded() else ["api", "smtp"]
    paths = ["postfix", "bare", *postwerk]
    argv = ["--messages", str(MESSAGES), "--runs", "1", "--paths", ",".join(paths), "--retries", "0"]
    argv += ["--domains", "2", "--sessions", "2", "--clients", "2", "--batch", "10", "--dkim-sample", "0"]
    argv += ["--workers", "1", "--concurrency", "2", *SMALL_WEB, "--out", str(tmp_path / "runs")]
    # The Postwerk paths' own backend options: throughput.py picks the embedded ones by path name.
    argv += [] if embedded() else backend
    report = run_bench("throughput.py", *argv, tmp_path=tmp_path, timeout=400)
    delivered = {
        path: [attempt["report"]["delivery"]["delivered"] for run in runs for attempt in run["attempts"]]
        for path, runs in report["results"].items()
    }
    assert delivered == {path: [MESSAGES] for path in paths}
    assert {path: s["runs_ok"] for path, s in report["summary"]["paths"].items()} == dict.fromkeys(paths, 1)


@pytest.mark.worker
@pytest.mark.timeout(480)
def test_stream_priority_benchmark_runs_both_phases(backend, tmp_path):
    # A smoke size says nothing about the ratio (timing is the benchmark's business): --max-ratio 0 reports only.
    argv = ["--broadcast", "40", "--transactional", "5", "--rate", "10", "--max-ratio", "0"]
    # Two worker pools, started one after the other: more start-up than the other benchmarks.
    report = run_bench("stream_priority.py", *argv, *SMALL, *SMALL_WEB, *backend, tmp_path=tmp_path, timeout=400)
    assert report["transactional_delivered"] == 10
    assert report["config"]["broadcast"] == 40
