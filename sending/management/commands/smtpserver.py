"""`manage.py smtpserver`: the SMTP listeners in the foreground. Run as many as you like behind a balancer."""

from __future__ import annotations

import asyncio
import signal

from django.core.management.base import BaseCommand

from sending.smtp.server import SmtpServer


class Command(BaseCommand):
    help = "Run Postwerk's SMTP listeners (submission with STARTTLS, implicit TLS)."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        server = SmtpServer()
        if not server.listeners:
            self.stderr.write("Every SMTP listener is off; nothing to do.")
            return

        async def main() -> None:
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            try:
                await server.serve()
            except asyncio.CancelledError:
                pass

        for listener in server.listeners:
            self.stdout.write(f"SMTP {listener.name} on {listener.host}:{listener.port}")
        asyncio.run(main())
