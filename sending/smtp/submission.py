"""The submission handler: AUTH with SMTP credentials, early checks at MAIL and RCPT, storage after DATA.

Each step answers with a code and enhanced status (RFC 3463). Database work runs in a thread, so one slow
query never stalls the other sessions on the event loop; accepted messages are stored by a group commit
(group_commit.py), many sessions' messages in one transaction, each `250` sent after its commit.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from django.conf import settings
from django.db import DatabaseError

from accounts.models import SmtpCredential
from accounts.services import smtp_credential_authenticate, smtp_credential_for_network
from sending.delivery.queueing import BackgroundPublisher, enqueues_collected
from sending.intake.smtp_intake import Refused, check_recipient, check_sender, smtp_message_prepare, smtp_messages_store
from sending.intake.submission import Prepared
from sending.observability import oplog
from sending.reputation import overload
from sending.smtp import auth_limits
from sending.smtp.group_commit import GroupCommit
from sending.smtp.handler_base import (
    TEMPORARY_FAILURE,
    BaseHandler,
    db_ready,
    overloaded_async,
    protocol,
    run_db,
    run_maybe_db,
)
from sending.smtp.protocol import PostwerkSMTP

log = logging.getLogger(__name__)

# aiosmtpd calls the authenticator synchronously inside the event loop, where Django forbids queries. The lookup
# runs on this pool and the loop waits for it: one indexed query, about a millisecond.
_auth_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="smtp-auth")


def _check_credentials(username: str, password: str, ip: str | None) -> SmtpCredential | None | str:
    db_ready()
    if auth_limits.locked_out(ip, username):
        return "locked"
    return smtp_credential_authenticate(username=username, password=password, peer_ip=ip)


def authenticator(server: PostwerkSMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any):  # type: ignore[no-untyped-def]
    """aiosmtpd calls this synchronously for AUTH PLAIN and LOGIN."""
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    username = auth_data.login.decode("utf-8", "replace")
    password = auth_data.password.decode("utf-8", "replace")
    ip = server.peer_ip
    try:
        credential = _auth_pool.submit(_check_credentials, username, password, ip).result(timeout=30)
    except (DatabaseError, TimeoutError):
        log.exception("AUTH failed on a database error")
        return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
    if credential == "locked":
        server.auth_delay = 1.0
        return AuthResult(
            success=False, handled=False, message="454 4.7.0 Too many failed authentication attempts; try again later"
        )
    if credential is None:
        server.auth_delay = auth_limits.delay_after(auth_limits.record_failure(ip, username))
        return AuthResult(success=False, handled=False)
    return AuthResult(success=True, auth_data=credential)


async def trusted_credential(peer_ip: str | None) -> SmtpCredential | None:
    try:
        return await run_db(smtp_credential_for_network, peer_ip)
    except DatabaseError:
        log.exception("trusted-network lookup failed on a database error")
        return None


def message_committer(publisher: BackgroundPublisher | None = None) -> GroupCommit[Prepared]:
    """One per server process, shared by its submission listeners: one group commit for all their sessions.
    With a `publisher`, delivery tasks are published from its thread instead of before the group's 250s."""

    def store(prepared: Sequence[Prepared]) -> dict[int, Refused]:
        db_ready()
        if publisher is None:
            return smtp_messages_store(prepared)
        with enqueues_collected() as committed:
            refused = smtp_messages_store(prepared)
        publisher.submit(committed)
        return refused

    # One commit at a time: a second one in flight (measured on PostgreSQL) only made the groups smaller.
    return GroupCommit(store, max_group=settings.POSTWERK_SMTP_COMMIT_GROUP)


class SubmissionHandler(BaseHandler):
    def __init__(self, *, max_recipients: int, committer: GroupCommit[Prepared]) -> None:
        self.max_recipients = max_recipients
        self.committer = committer

    async def handle_MAIL(
        self,
        server: PostwerkSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        credential: SmtpCredential = session.auth_data
        if await overloaded_async():
            return overload.SMTP_MAIL_REPLY
        try:
            await run_maybe_db(check_sender, credential, address)
        except Refused as refused:
            return refused.reply
        except DatabaseError:
            log.exception("MAIL FROM check failed on a database error")
            return TEMPORARY_FAILURE
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self,
        server: PostwerkSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return f"452 4.5.3 Too many recipients (at most {self.max_recipients} per message)"
        try:
            check_recipient(address)
        except Refused as refused:
            return refused.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: PostwerkSMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            prepared = await run_maybe_db(
                smtp_message_prepare,
                credential=session.auth_data,
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                smtputf8=bool(envelope.smtp_utf8),
                trace=server.trace(),
            )
            await self.committer.submit(prepared)
        except Refused as refused:
            reply = refused.reply
        except DatabaseError:
            log.exception("a submitted message could not be stored")
            reply = TEMPORARY_FAILURE
        except Exception:  # never a 250 for something not stored, never a dropped connection
            log.exception("a submitted message could not be accepted")
            reply = TEMPORARY_FAILURE
        else:
            oplog.smtp_accepted(credential=session.auth_data, prepared=prepared, peer_ip=server.peer_ip)
            return f"250 2.0.0 Ok: queued as {prepared.message.id}"
        oplog.smtp_refused(
            reply=reply, peer_ip=server.peer_ip, credential=session.auth_data, recipients=len(envelope.rcpt_tos)
        )
        return reply


def submission_protocol(  # type: ignore[no-untyped-def]
    *, tls_context, implicit_tls: bool, per_ip: Counter[str], committer: GroupCommit[Prepared] | None = None
):
    """A factory of protocol instances for one listener; `per_ip` counts connections across the server's listeners,
    and `committer` stores their messages."""
    handler = SubmissionHandler(
        max_recipients=settings.POSTWERK_MAX_RECIPIENTS, committer=committer or message_committer()
    )

    def factory() -> PostwerkSMTP:
        return protocol(
            handler,
            data_size_limit=settings.POSTWERK_MAX_MESSAGE_SIZE,
            per_ip=per_ip,
            tls_context=None if implicit_tls else tls_context,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticator,
            implicit_tls=implicit_tls,
            trusted_lookup=trusted_credential if settings.POSTWERK_SMTP_TRUSTED_NETWORKS else None,
            overload_check=True,
        )

    return factory
