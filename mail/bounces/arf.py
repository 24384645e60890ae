"""RFC 5965 Abuse Reporting Format (ARF) feedback reports: a complaint about a message we sent.

A feedback report is a multipart/report; report-type=feedback-report with a human-readable part, a
message/feedback-report part (Feedback-Type, User-Agent, Version, Original-Mail-From, Original-Rcpt-To,
Original-Envelope-Id, Arrival-Date, Reported-Domain, Source-IP...) and the original message or its headers.
Some providers (Microsoft's JMRP, older Yahoo loops) send the feedback-report part inside multipart/mixed, so any
message/feedback-report part counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

from mail.bounces import message as mime

FEEDBACK_TYPE = "message/feedback-report"


@dataclass
class Feedback:
    feedback_type: str  # abuse, fraud, virus, other, not-spam, auth-failure (RFC 5965 §7.3, RFC 6591)
    original_rcpt_to: list[str] = field(default_factory=list)
    original_mail_from: str = ""
    original_envelope_id: str = ""
    user_agent: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def find_part(msg: Message) -> Message | None:
    for part in mime.walk(msg):
        if mime.content_type(part) == FEEDBACK_TYPE:
            return part
    return None


def is_feedback_report(msg: Message) -> bool:
    ctype = mime.content_type(msg)
    report_type = (msg.get_param("report-type", header="content-type") or "") if ctype == "multipart/report" else ""
    return str(report_type).lower() == "feedback-report" or find_part(msg) is not None


def parse(part: Message | None) -> Feedback:
    fields: dict[str, str] = {}
    if part is not None:
        for block in mime.parse_fields(mime.structured_text(part)):
            for name, value in block.items():
                fields.setdefault(name, value)
    rcpts = [mime.clean_address(value) for value in fields.get("original-rcpt-to", "").split("\n")]
    envelope_id = fields.get("original-envelope-id", "").strip()
    return Feedback(
        feedback_type=(fields.get("feedback-type", "").split() or ["abuse" if part is not None else ""])[0].lower(),
        original_rcpt_to=[rcpt for rcpt in dict.fromkeys(rcpts) if rcpt],
        original_mail_from=mime.clean_address(fields.get("original-mail-from", "")),
        original_envelope_id=envelope_id,
        user_agent=fields.get("user-agent", ""),
        fields=fields,
    )
