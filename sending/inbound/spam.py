"""The inbound spam check: SpamAssassin's spamd asked through aiospamc (the SYMBOLS command: verdict, score,
threshold and the rules that hit), awaited by the SMTP session with a bound.

Optional: with POSTWERK_SPAMD_ADDRESS unset, or a spamd that is down, slow or answers nonsense, the result is
"not checked" with the reason, never a made-up score, and the mail is accepted all the same (a spam check must
not lose mail or hold the SMTP session past POSTWERK_SPAMD_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import logging

from aiospamc import symbols
from aiospamc.connections import Timeout
from django.conf import settings

log = logging.getLogger(__name__)

NOT_CONFIGURED = "no spam checker configured"
# spamc's own default limit: larger messages are not sent (spamd's rules are written for mail this size).
MAX_SIZE = 500 * 1024


def not_checked(reason: str) -> dict:
    return {"checked": False, "reason": reason}


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.strip().rpartition(":")
    if not host:  # a bare host: spamd's port
        return value.strip(), 783
    return host.strip("[]"), int(port)


async def spam_check(raw: bytes) -> dict:
    """{"checked": True, "score", "threshold", "is_spam", "rules"} from spamd, or {"checked": False, "reason"}."""
    address = settings.POSTWERK_SPAMD_ADDRESS
    if not address:
        return not_checked(NOT_CONFIGURED)
    if len(raw) > MAX_SIZE:
        return not_checked(f"larger than {MAX_SIZE} bytes")
    bound = settings.POSTWERK_SPAMD_TIMEOUT
    try:
        host, port = _address(address)
        ask = symbols(raw, host=host, port=port, timeout=Timeout(total=bound, connection=bound, response=bound))
        # The library's own timeouts, and this one around them in case a step of it has none.
        response = await asyncio.wait_for(ask, timeout=bound + 1)
    except TimeoutError:
        return not_checked(f"the spam checker did not answer within {bound:g} s")
    except Exception as exc:  # down, refused, a protocol error: accepted unchecked
        log.warning("spamd at %s failed: %r", address, exc)
        return not_checked(f"the spam checker failed: {type(exc).__name__}")
    verdict = response.headers.spam
    if verdict is None:
        return not_checked("the spam checker gave no verdict")
    rules = [rule for rule in response.body.decode("ascii", "replace").strip().split(",") if rule]
    return {
        "checked": True,
        "score": round(float(verdict.score), 1),
        "threshold": round(float(verdict.threshold), 1),
        "is_spam": bool(verdict.value),
        "rules": rules,
    }


def spam_headers(spam: dict) -> bytes:
    """X-Spam-Status and X-Spam-Score in SpamAssassin's own format, as Postmark's inbound posts carry them; nothing
    when the message was not checked."""
    if not spam.get("checked"):
        return b""
    status = "Yes" if spam["is_spam"] else "No"
    tests = ",".join(spam["rules"]) or "none"
    return (
        f"X-Spam-Status: {status}, score={spam['score']:.1f} required={spam['threshold']:.1f}\r\n"
        f"\ttests={tests}\r\n"
        f"X-Spam-Score: {spam['score']:.1f}\r\n"
    ).encode("ascii", "replace")


def spam_status(spam: dict) -> str:
    """The post's SpamStatus: `spam`, `ham`, or `not checked`."""
    if not spam.get("checked"):
        return "not checked"
    return "spam" if spam["is_spam"] else "ham"
