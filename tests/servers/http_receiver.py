"""A real HTTP server on loopback that receives webhooks for the tests and answers as told.

``answers`` is a list of statuses (or (status, body) pairs) used one per request, then ``status``; ``delay``
seconds pass before each answer (to make the sender time out). Every request is kept with its headers and body.
With ``tls=(cert, key)`` it speaks HTTPS. ``pages`` maps a path to what a GET of it answers (status, content
type, body), e.g. an MTA-STS policy at /.well-known/mta-sts.txt; other GETs are 404.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["HttpReceiver", "ReceivedRequest"]


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, answer = receiver._next_answer()
        if receiver.delay:
            time.sleep(receiver.delay)
        with receiver._lock:
            receiver.requests.append(
                ReceivedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            receiver._arrived.notify_all()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass  # the sender gave up (timeout) and closed the connection

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        receiver = self.server.receiver
        with receiver._lock:
            receiver.requests.append(
                ReceivedRequest("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b"")
            )
            receiver._arrived.notify_all()
        status, content_type, body = receiver.pages.get(self.path, (404, "text/plain", b"not found"))
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpReceiver


class HttpReceiver:
    def __init__(self, host: str = "127.0.0.1", *, tls: tuple[str, str] | None = None) -> None:
        self.host = host
        self.tls = tls
        self.answers: list[int | tuple[int, bytes]] = []
        self.status = 200
        self.delay = 0.0
        self.requests: list[ReceivedRequest] = []
        self.pages: dict[str, tuple[int, str, bytes]] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, path: str = "/hooks/postwerk", host: str | None = None) -> str:
        return f"{'https' if self.tls else 'http'}://{host or self.host}:{self.port}{path}"

    def _next_answer(self) -> tuple[int, bytes]:
        with self._lock:
            answer = self.answers.pop(0) if self.answers else self.status
        if isinstance(answer, tuple):
            return answer
        return answer, f"status {answer}".encode()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
        return True

    def start(self) -> HttpReceiver:
        self._server = _Server((self.host, 0), _Handler)
        self._server.receiver = self
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
