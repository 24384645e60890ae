"""The application's two roles, each a command: `send CASE` sends one case's mail through anymail's Postmark
backend and prints what anymail returned (JSON); `serve PORT EVENTS_FILE` serves anymail's webhook URLs on
127.0.0.1 and writes each tracking signal anymail fires as a JSON line."""

from __future__ import annotations

import json
import os
import sys

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.servers.anymail_app.settings"  # its own, never Postwerk's

import django  # noqa: E402

django.setup()

from anymail.exceptions import AnymailAPIError  # noqa: E402
from anymail.message import AnymailMessage  # noqa: E402
from anymail.signals import tracking  # noqa: E402

from tests.servers.anymail_app import PNG  # noqa: E402


def _status(message: AnymailMessage) -> dict:
    status = message.anymail_status
    return {
        "status": sorted(status.status or []),
        "message_id": status.message_id if isinstance(status.message_id, str) else None,
        "recipients": {addr: {"status": s.status, "message_id": s.message_id} for addr, s in status.recipients.items()},
    }


def send(case: str) -> dict:
    message = AnymailMessage(from_email="Acme <hello@acme.example>", to=["Jane Doe <jane@dest.example>"])
    if case == "full":
        message.subject = "Your order 1234"
        message.body = "Thanks for your order."
        message.attach("invoice.pdf", b"%PDF-1.4 invoice", "application/pdf")
        cid = message.attach_inline_image(PNG, filename="logo.png", domain="acme.example")
        message.attach_alternative(f'<p>Thanks! <img src="cid:{cid}"></p>', "text/html")
        message.tags = ["order"]
        message.metadata = {"order_id": "1234", "user": 42}
        message.reply_to = ["Support <support@acme.example>"]
        message.cc = ["bob@dest.example"]
        message.extra_headers = {"X-Campaign": "spring"}
    elif case == "template":
        message.template_id = "welcome"
        message.merge_global_data = {"name": "Jane", "team": "Acme"}
    elif case == "batch":
        message.to = ["Jane <jane@dest.example>", "Bob <bob@dest.example>"]
        message.template_id = "welcome"
        message.merge_global_data = {"team": "Acme"}
        message.merge_data = {"jane@dest.example": {"name": "Jane"}, "bob@dest.example": {"name": "Bob"}}
        message.merge_metadata = {"jane@dest.example": {"user": "1"}, "bob@dest.example": {"user": "2"}}
    elif case == "suppressed":
        message.subject, message.body = "Hello", "Hello"
        message.to = ["jane@dest.example", "gone@dest.example"]
    try:
        sent = message.send()
    except AnymailAPIError as exc:
        return {"error": type(exc).__name__, "status_code": exc.status_code, "text": str(exc)[:500]}
    return {"sent": sent, **_status(message)}


def serve(port: int, events_file: str) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.wsgi import get_wsgi_application

    def record(sender, event, esp_name, **kwargs):  # type: ignore[no-untyped-def]
        line = {
            "esp_name": esp_name,
            "event_type": event.event_type,
            "recipient": event.recipient,
            "message_id": event.message_id,
            "tags": event.tags,
            "metadata": event.metadata,
            "reject_reason": event.reject_reason,
            "mta_response": event.mta_response,
            "click_url": event.click_url,
            "user_agent": event.user_agent,
            "event_id": event.event_id,
            "timestamp": event.timestamp.isoformat() if event.timestamp else None,
        }
        with open(events_file, "a") as out:
            out.write(json.dumps(line) + "\n")

    tracking.connect(record, weak=False)

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):  # type: ignore[no-untyped-def]  # noqa: A002
            pass

    server = make_server("127.0.0.1", port, get_wsgi_application(), handler_class=Quiet)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "send":
        print(json.dumps(send(sys.argv[2])))
    else:
        serve(int(sys.argv[2]), sys.argv[3])
