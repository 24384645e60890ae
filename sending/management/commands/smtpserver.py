"""`manage.py smtpserver`: the SMTP listeners in the foreground. Run as many as you like behind a balancer, or
several processes on the same ports with --processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

from sending.smtp.server import SmtpServer


class Command(BaseCommand):
    help = "Run Postwerk's SMTP listeners (submission with STARTTLS, implicit TLS)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--processes",
            type=int,
            default=settings.POSTWERK_SMTP_PROCESSES,
            help="server processes sharing the listeners' ports (SO_REUSEPORT); one event loop and one group "
            "commit each, so SMTP ingestion uses more than one core (default: POSTWERK_SMTP_PROCESSES)",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        server = SmtpServer()
        if not server.listeners:
            self.stderr.write("Every SMTP listener is off; nothing to do.")
            return
        for listener in server.listeners:
            self.stdout.write(f"SMTP {listener.name} on {listener.host}:{listener.port}")
        processes = max(1, options["processes"])
        if processes == 1:
            serve(server)
            return
        self.stdout.write(f"{processes} processes")
        self.stdout.flush()
        sys.exit(serve_forked(processes))


def serve(server: SmtpServer) -> None:
    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await server.serve()
        except asyncio.CancelledError:
            pass

    asyncio.run(main())


def serve_forked(processes: int) -> int:
    """Fork `processes` servers on the same ports and wait. A signal is passed on to every child; when one child
    ends on its own, the others are stopped too and its status returned (the supervisor restarts the whole)."""
    connections.close_all()  # each child opens its own database connections
    children: set[int] = set()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 0
            try:
                serve(SmtpServer(reuse_port=True))
            except BaseException:  # noqa: BLE001 - reported, then the child's status says it failed
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.add(pid)
    status = 0
    while children:
        pid, wait_status = os.wait()
        children.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0 and status == 0:
            status = code if code > 0 else 128 - code
        if children:  # one is gone: stop the rest
            forward(signal.SIGTERM, None)
    return status
