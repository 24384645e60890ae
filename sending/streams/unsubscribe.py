"""Broadcast mail's one-click unsubscribe (RFC 8058), as far as the sender set it itself.

Postwerk adds `List-Unsubscribe: <https://…/t/u/…>` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` to
broadcast mail that has no List-Unsubscribe (sending.feedback.tracking, in the worker, before DKIM signing). A
sender that sets its own must set a valid one: RFC 8058 §3.1 wants at least one HTTPS URI in List-Unsubscribe and
exactly `List-Unsubscribe=One-Click` in List-Unsubscribe-Post, and mailbox providers (Gmail, Yahoo) hold bulk
senders to it. Anything else is refused at accept time rather than sent to be junked.
"""

from __future__ import annotations

import re

from mail.raw_message import parse_headers, raw_header
from sending.errors import Refused, field_errors

ONE_CLICK = "List-Unsubscribe=One-Click"
# RFC 2369 §2: a list of angle-bracketed URIs, separated by commas.
_URIS = re.compile(r"<([^<>]*)>")


def list_unsubscribe_problem(raw: bytes) -> tuple[str, str] | None:
    """(header, why) when the message's own List-Unsubscribe headers would not give a one-click unsubscribe; None
    when they do, or when it has none (Postwerk adds them)."""
    headers = parse_headers(raw)
    value = raw_header(headers, "List-Unsubscribe")
    post = raw_header(headers, "List-Unsubscribe-Post")
    if value is None:
        if post is not None:
            return "List-Unsubscribe-Post", "List-Unsubscribe-Post without List-Unsubscribe (RFC 8058 §3.1)."
        return None
    uris = [u.strip() for u in _URIS.findall(value)]
    if not any(re.fullmatch(r"https://[^\s/?#]+[^\s]*", u, re.IGNORECASE) for u in uris):
        return (
            "List-Unsubscribe",
            "Broadcast mail needs an https URL in List-Unsubscribe, as <https://…> (RFC 8058 §3.1).",
        )
    if post is None or " ".join(post.split()) != ONE_CLICK:
        return "List-Unsubscribe-Post", f"Broadcast mail needs List-Unsubscribe-Post: {ONE_CLICK} (RFC 8058 §3.1)."
    return None


def list_unsubscribe_refusal(raw: bytes) -> Refused | None:
    """The refusal of a broadcast message whose own List-Unsubscribe is invalid: 400 naming the header, SMTP 550."""
    problem = list_unsubscribe_problem(raw)
    if problem is None:
        return None
    header, why = problem
    return Refused(
        why,
        code="invalid",
        http_status=400,
        fields=field_errors(("headers", header), why),
        smtp_reply=f"550 5.7.1 {why}",
    )
