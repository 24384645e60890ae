"""One structured log line per SMTP submission transaction and per delivery attempt, carrying the message and
recipient ids, so an operator can follow one message from the listener that took it to the worker that
delivered it (POSTWERK_LOG_FORMAT=json turns each into one JSON object). The same calls count the per-process
Prometheus figures.

Cheap by design: fields go in `extra` (no string building), and nothing is built when INFO is off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sending.observability import metrics

if TYPE_CHECKING:
    from accounts.models import SmtpCredential
    from sending.delivery.deliver import Outcome
    from sending.intake.submission import Prepared

smtp_log = logging.getLogger("postwerk.smtp")
delivery_log = logging.getLogger("postwerk.delivery")


def smtp_accepted(*, credential: SmtpCredential, prepared: Prepared, peer_ip: str | None) -> None:
    """A submitted message was stored (called after the commit, before the 250)."""
    metrics.SMTP_TRANSACTIONS.labels("accepted").inc()
    if smtp_log.isEnabledFor(logging.INFO):
        message = prepared.message
        smtp_log.info(
            "smtp submission accepted",
            extra={
                "event": "smtp.accepted",
                "message_id": str(message.pk),
                "recipient_ids": [str(r.pk) for r in prepared.recipients],
                "organization_id": message.organization_id,
                "credential": credential.username,
                "peer_ip": peer_ip,
                "mail_from": message.mail_from,
                "header_message_id": message.message_id,
                "size": message.size,
            },
        )


def smtp_refused(*, reply: str, peer_ip: str | None, credential: SmtpCredential | None, recipients: int) -> None:
    """A DATA that was answered with anything but 250: a refusal (5xx) or a temporary failure (4xx)."""
    result = "refused" if reply.startswith("5") else "failed"
    metrics.SMTP_TRANSACTIONS.labels(result).inc()
    if smtp_log.isEnabledFor(logging.INFO):
        smtp_log.info(
            "smtp submission %s",
            result,
            extra={
                "event": f"smtp.{result}",
                "reply": reply[:200],
                "peer_ip": peer_ip,
                "credential": getattr(credential, "username", None),
                "recipients": recipients,
            },
        )


def outcomes_recorded(outcomes: Iterable[Outcome]) -> None:
    """Each recorded delivery attempt (after its transaction committed): a log line and the latency figure."""
    verbose = delivery_log.isEnabledFor(logging.INFO)
    for o in outcomes:
        r = o.recipient
        metrics.DELIVERY_ATTEMPTS.labels(r.state).inc()
        if r.delivered_at is not None and r.state == "delivered":
            metrics.DELIVERY_LATENCY.observe(max(0.0, (r.delivered_at - r.created_at).total_seconds()))
        if verbose:
            delivery_log.info(
                "delivery attempt %s",
                r.state,
                extra={
                    "event": "delivery.attempt",
                    "message_id": str(r.message_id),
                    "recipient_id": str(r.pk),
                    "organization_id": r.organization_id,
                    "domain": r.domain,
                    "mx_host": o.mx_host,
                    "code": o.reply.code,
                    "enhanced": o.reply.enhanced,
                    "state": r.state,
                    "attempt": r.attempts,
                    "tls": o.tls,
                },
            )
