"""`make run` (platform/dev-run, platform/Procfile.dev) stops its Celery worker gracefully: honcho signals each
process group, and the worker's pool children must not get that signal, or the worker is SIGKILLed on every stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.worker_process import ROOT, wait_until, worker_env

pytestmark = pytest.mark.worker


def procfile_command(name: str) -> str:
    for line in (ROOT / "platform" / "Procfile.dev").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in Procfile.dev")


def start_like_honcho(command: str, log_path, **env: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    """As honcho 2 starts a Procfile line: through /bin/sh -c, from the repository root, in a new session."""
    return subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=ROOT,
        env=worker_env(**env),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_like_honcho(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)  # honcho's terminate: the whole process group


def test_the_make_run_worker_stops_on_its_own_without_its_pool_children_being_signalled(tmp_path):
    log = tmp_path / "worker.log"
    worker = start_like_honcho(procfile_command("worker"), log)
    try:
        assert wait_until(lambda: b"ready." in log.read_bytes(), timeout=60), log.read_text()
        stop_like_honcho(worker)
        # The worker's warm shutdown, not honcho's SIGKILL (which dev-run sends after 30 s): within the 20 s the
        # wrapper allows, and with its children stopped by the worker itself.
        assert worker.wait(25) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    text = log.read_text()
    assert "Warm shutdown" in text
    assert "exited with 'signal" not in text, text  # billiard's report of a pool child killed by a signal
    assert "still running" not in text, text  # main-signal-only's own kill after its grace


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_and_nothing_outlives_it(tmp_path):
    """The wrapper puts the command in a group of its own, out of honcho's reach: it must end it itself."""
    ignoring = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    log = tmp_path / "ignoring.log"
    command = f'exec platform/main-signal-only 1 {sys.executable} -c "{ignoring}"'
    wrapper = start_like_honcho(command, log)
    assert wait_until(lambda: b"up" in log.read_bytes(), timeout=30), log.read_text()
    child_group = int(
        subprocess.run(["pgrep", "-P", str(wrapper.pid)], capture_output=True, text=True, check=True).stdout.split()[0]
    )
    stop_like_honcho(wrapper)
    assert wrapper.wait(15) == 128 + signal.SIGKILL
    assert "still running 1 s after SIGTERM: killing it" in log.read_text()
    assert wait_until(lambda: not _group_alive(child_group), timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
