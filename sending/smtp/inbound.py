"""The inbound MX handler: DSNs, feedback reports and auto-replies addressed to return-path addresses, and mail
for the organizations' inbound domains (sending.inbound).

No AUTH and no relaying: RCPT is accepted only for an address an inbound route takes (550 5.1.1 for any other
address of an inbound domain) and for return-path and feedback addresses of known hosts (550 5.7.1 otherwise).
The message is stored raw (routed mail with our Authentication-Results header), then processed.
"""

from __future__ import annotations

import logging
from collections import Counter

from aiosmtpd.smtp import Envelope, Session
from django.conf import settings
from django.db import DatabaseError

from sending.errors import Refused
from sending.feedback.inbound_intake import check_inbound_recipient
from sending.inbound.receive import inbound_receive, route_check
from sending.inbound.spam import spam_check
from sending.smtp.handler_base import TEMPORARY_FAILURE, BaseHandler, protocol, run_db
from sending.smtp.inbound_limits import TOO_MANY, count_message, over_limit
from sending.smtp.protocol import PostwerkSMTP

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 50


class InboundHandler(BaseHandler):
    async def handle_MAIL(
        self, server: PostwerkSMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # DSNs come from the null sender (RFC 3464 §2, RFC 5321 §4.5.5); anything else is taken as given.
        if await run_db(over_limit, server.peer_ip):
            return TOO_MANY
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: PostwerkSMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients (at most {MAX_RECIPIENTS} per message)"
        try:
            route_id = await run_db(route_check, address)
            if route_id is None:
                await run_db(check_inbound_recipient, address)
        except Refused as refused:
            return refused.reply
        except DatabaseError:
            log.exception("inbound RCPT check failed on a database error")
            return TEMPORARY_FAILURE
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if route_id is not None:
            _routed(envelope)[address] = route_id
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: PostwerkSMTP, session: Session, envelope: Envelope) -> str:
        routed = _routed(envelope)
        raw = envelope.original_content or b""
        # Awaited here, not in the database thread: a slow spamd holds this session only, for a bounded time.
        spam = await spam_check(raw) if routed else None
        try:
            queued = await run_db(
                inbound_receive,
                peer_ip=server.peer_ip,
                helo=session.host_name or "",
                mail_from=envelope.mail_from or "",
                feedback_rcpts=[a for a in envelope.rcpt_tos if a not in routed],
                routed=dict(routed),
                raw=raw,
                spam=spam,
            )
        except Refused as refused:
            return refused.reply
        except Exception:  # never a 250 for something not stored
            log.exception("an inbound message could not be stored")
            return TEMPORARY_FAILURE
        await run_db(count_message, server.peer_ip)
        return f"250 2.0.0 Ok: queued as {queued}"


def _routed(envelope: Envelope) -> dict[str, str]:
    """The envelope's routed recipients (address → route id), beside aiosmtpd's own fields."""
    if not hasattr(envelope, "postwerk_routed"):
        envelope.postwerk_routed = {}  # type: ignore[attr-defined]
    return envelope.postwerk_routed  # type: ignore[attr-defined]


def inbound_protocol(*, tls_context, per_ip: Counter[str]):  # type: ignore[no-untyped-def]
    handler = InboundHandler()

    def factory() -> PostwerkSMTP:
        return protocol(
            handler,
            data_size_limit=settings.POSTWERK_INBOUND_MAX_MESSAGE_SIZE,
            per_ip=per_ip,
            tls_context=tls_context,  # opportunistic STARTTLS for senders that want it
            auth_required=False,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],  # no AUTH here: nothing to log in to
        )

    return factory
