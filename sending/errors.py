"""The one refusal every way of submitting mail answers with.

Like every exception Postwerk raises on purpose it derives from `PostwerkError` (mail.errors). A `Refused` carries
every answer it may become: the API's status, error code and field errors, and the SMTP reply with its enhanced
status code (RFC 3463). The API's exception handler and the SMTP handlers each translate it in one place.
"""

from __future__ import annotations

from mail.errors import PostwerkError

__all__ = ["PostwerkError", "Refused", "field_errors", "one_line"]


class Refused(PostwerkError):
    """Mail (or a command) refused before anything was stored."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "refused",
        http_status: int = 400,
        smtp_reply: str | None = None,
        fields: dict | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.http_status = message, code, http_status
        self.fields, self.retry_after = fields, retry_after
        # RFC 3463 §3.8: without a more precise reply, a permanent "delivery not authorized".
        self.smtp_reply = smtp_reply or f"550 5.7.1 {one_line(message)}"

    @classmethod
    def smtp(cls, reply: str) -> Refused:
        """A refusal that only SMTP can meet (a bad RCPT TO, say): the reply is the whole answer."""
        basic = reply[:1]
        return cls(reply[4:], code="refused", http_status=400 if basic == "5" else 503, smtp_reply=reply)

    @property
    def reply(self) -> str:
        return self.smtp_reply

    def __str__(self) -> str:
        return self.message


def one_line(text: object) -> str:
    """Text fit for an SMTP reply: one line, well under RFC 5321 §4.5.3.1.5's 512 octets."""
    return " ".join(str(text).split())[:400]


def field_errors(path: tuple[str | int, ...], problem: str) -> dict:
    """{"headers": {"X-Name": [problem]}} for the path ("headers", "X-Name"), nested as DRF nests field errors."""
    errors: dict | list = [problem]
    for part in reversed(path or ("non_field_errors",)):
        errors = {str(part): errors}
    assert isinstance(errors, dict)
    return errors
