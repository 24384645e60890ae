"""The built-in capture: where sandbox mail goes instead of an MX.

Mail of a sandbox API key or SMTP credential (Message.sandbox) is accepted, stored, signed and tracked exactly as
real mail, and leaves the delivery stage through this transport instead of an SMTP session: `CaptureSession`
answers the same calls an `SmtpSession` does, stores what it was given (a CapturedMessage per transaction, the
bytes as they would have gone out) and replies as the test address asks. The replies are then recorded by
`deliver.record_outcomes` like any MX's, so states, events, suppressions and webhooks are those of real mail; a
complaint comes back as an RFC 5965 report through the inbound pipeline (sending.feedback), as a mailbox
provider's would. Nothing here opens a socket.

Test addresses, at SANDBOX_DOMAIN, with an optional `+anything` after the name so that each test run can use
fresh addresses (a hard bounce or complaint suppresses its address, as real ones do):

    delivered@     250: delivered
    bounce-hard@   550 5.1.1 (user unknown): a hard bounce, and the address is suppressed
    bounce-soft@   452 4.2.2 (mailbox full) on the first attempt: deferred; the retry is delivered
    complaint@     250: delivered; then an ARF complaint: `complained` event, address suppressed

Any other address, at any domain, is delivered (captured) and never reaches its real MX.
"""

from __future__ import annotations

import email.utils
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from mail.addresses import SANDBOX_DOMAIN
from mail.smtp_client import Reply
from mail.tls_verify import NONE
from sending.feedback.inbound_intake import inbound_store
from sending.models import CapturedMessage, Message, Recipient
from sending.return_path import return_path, return_path_host

if TYPE_CHECKING:
    from sending.delivery.deliver import Outcome

CAPTURE_HOST = "capture.postwerk.sandbox"  # the `mx_host` sandbox deliveries show


class Scenario(StrEnum):
    DELIVERED = "delivered"
    BOUNCE_HARD = "bounce-hard"
    BOUNCE_SOFT = "bounce-soft"
    COMPLAINT = "complaint"


def scenario(address: str) -> Scenario:
    """What a recipient address asks the sandbox to do: a test address's outcome, else delivered."""
    local, _, domain = address.rpartition("@")
    if domain.lower() != SANDBOX_DOMAIN:
        return Scenario.DELIVERED
    name = local.split("+", 1)[0].lower()
    return Scenario(name) if name in Scenario._value2member_map_ else Scenario.DELIVERED


def reply_for(address: str, attempt: int) -> Reply:
    """The reply a receiving MX would give for this scenario, worded so the ordinary classifier reads it."""
    wanted = scenario(address)
    if wanted is Scenario.BOUNCE_HARD:
        return Reply(550, "5.1.1", f"<{address}>: Recipient address rejected: User unknown (Postwerk sandbox)")
    if wanted is Scenario.BOUNCE_SOFT and attempt <= 1:
        return Reply(452, "4.2.2", f"<{address}>: Mailbox full (Postwerk sandbox: the next attempt is delivered)")
    return Reply(250, "2.0.0", "Ok: captured by the Postwerk sandbox, not delivered")


class CaptureSession:
    """The transport of sandbox mail: an SmtpSession's interface, and a CapturedMessage per transaction."""

    mx_host = CAPTURE_HOST
    tls: bool | None = None  # no connection, so no TLS to report
    tls_verification = NONE
    supports_smtputf8 = True
    max_size: int | None = None
    is_open = True

    def __init__(self, message: Message, recipients: list[Recipient]) -> None:
        self.message = message
        self.recipients = {r.address.lower(): r for r in recipients}

    def send(self, *, mail_from: str, rcpts: list[str], data: bytes, smtputf8: bool = False) -> dict[str, Reply]:
        replies = {}
        for address in rcpts:
            recipient = self.recipients[address.lower()]
            reply = replies[address] = reply_for(address, recipient.attempts)
            CapturedMessage.objects.create(
                organization_id=self.message.organization_id,
                message=self.message,
                recipient=recipient,
                mail_from=mail_from,
                rcpt_to=address,
                attempt=recipient.attempts,
                data=data,
                size=len(data),
                code=reply.code,
                enhanced=reply.enhanced,
                text=reply.text,
                outcome=scenario(address),
            )
        return replies

    def close(self) -> None:
        pass


def capture(message: Message, recipients: list[Recipient]) -> CaptureSession:
    return CaptureSession(message, recipients)


def after_recording(record: Callable[[list[Outcome]], None]) -> Callable[[list[Outcome]], None]:
    """`record`, then the complaints the recorded deliveries asked for. After, never before: the report must find
    its delivery `delivered`, as a real complaint does, and not race the worker that is still recording it."""

    def recorded(outcomes: list[Outcome]) -> None:
        record(outcomes)
        for o in outcomes:
            if o.reply.success and scenario(o.recipient.address) is Scenario.COMPLAINT:
                complaint_send(o.recipient)

    return recorded


def complaint_send(recipient: Recipient) -> None:
    """An RFC 5965 feedback report about this delivery, handed to the inbound pipeline at its VERP address as a
    mailbox provider's feedback loop would send it; processed by sending.feedback.bounce_processing."""
    verp = return_path(recipient.pk, return_path_host(recipient.message.domain))
    inbound_store(peer_ip=None, mail_from="", rcpt_tos=[verp], raw=arf_report(recipient, verp))


def arf_report(recipient: Recipient, verp: str) -> bytes:
    message = recipient.message
    boundary = f"sandbox-{uuid.uuid4().hex}"
    original = bytes(message.raw).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
    lines = [
        f"From: Postwerk sandbox feedback loop <fbl@{SANDBOX_DOMAIN}>",
        f"To: <{verp}>",
        "Subject: Postwerk sandbox complaint",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Message-ID: {email.utils.make_msgid(domain=SANDBOX_DOMAIN)}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"A complaint about a message to {recipient.address}, made up by the Postwerk sandbox.",
        "",
        f"--{boundary}",
        "Content-Type: message/feedback-report",
        "",
        "Feedback-Type: abuse",
        "User-Agent: Postwerk-Sandbox/1.0",
        "Version: 1",
        f"Original-Mail-From: <{verp}>",
        f"Original-Rcpt-To: <{recipient.address}>",
        f"Arrival-Date: {email.utils.formatdate(usegmt=True)}",
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
        original.replace("\r\n", "\n"),
        "",
        f"--{boundary}--",
        "",
    ]
    return "\n".join(lines).replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
