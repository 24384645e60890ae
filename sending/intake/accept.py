"""The one accept pipeline: every way mail enters Postwerk passes the same steps, in this order.

    1. authorise     the caller (API key or SMTP credential) may send as the From domain    403 / 550 5.7.1
    2. guard         the domain may send now: verified, and DMARC would not reject the mail   403 / 550 5.7.1
    3. compose       the API's fields built into MIME, or a submitted message normalised      400, 413 / 55x
                     (a message naming a template is first rendered with its model:
                     sending.templating.compose; 400 naming `template` or `model`)
    4. screen        suppressed recipients marked, then mail of a paused scope or over the     429 / 451 4.7.1
                     send limit held (or refused, when the organization rejects)
    5. store         messages, recipients, tags and first events in one transaction
    6. enqueue       delivery tasks published once that transaction has committed

A refusal at any step is a `Refused` carrying its API status and SMTP reply; nothing is stored. The send API (one
message or a batch, where each message is refused on its own) calls `accept`, which runs all six; so do the
compatible APIs (sending.compat), whose requests become the send API's submissions or, for a raw message, an
SMTP one. The SMTP server stores many sessions' messages in one transaction (its group commit), so it runs the
same steps in two parts: `prepare` (1-3) in the session, on its event loop, and `screen_and_store` (4-6) in the
group commit's thread for every message that arrived meanwhile, each screened as if it had come alone.

Screening comes after composing so that both ways count the same thing against the send limit: a message whose
recipients are all suppressed is accepted, recorded and never sent, and does not count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from django.db import transaction

from accounts.models import ApiKey, Organization, SmtpCredential
from sending.domains.guard import domain_refusal
from sending.domains.service import sender_domain
from sending.errors import Refused, one_line
from sending.feedback.suppressions import suppressed_addresses
from sending.intake.submission import IdempotencyRecord, Prepared, messages_submit
from sending.models import Domain, RecipientState, Stream, Suppression
from sending.reputation.holds import holds_screen


@dataclass
class Caller:
    """Who submits: an organization, through one API key or one SMTP credential."""

    organization: Organization
    api_key: ApiKey | None = None
    smtp_credential: SmtpCredential | None = None
    # The sender domains already looked up for this caller (an API request, or an SMTP session's credential).
    domains: dict[str, Domain | None] = field(default_factory=dict, repr=False)
    # Its message streams by name, looked up once (sending.streams.options.caller_stream).
    streams: dict[str, Stream | None] = field(default_factory=dict, repr=False)
    # The templates (and partials) already loaded for this caller: a batch looks each up once.
    templates: dict[object, object] = field(default_factory=dict, repr=False)

    @property
    def via_smtp(self) -> bool:
        return self.smtp_credential is not None


class Submission(Protocol):
    """One message as it arrived, before it is a Prepared."""

    def sender_domains(self) -> list[str]:
        """The From domains to authorise and guard (reading the message far enough to know them; may raise Refused)."""
        ...

    def compose(self, caller: Caller, domain: Domain) -> Prepared:
        """Build or normalise the message and its rows in memory for the first From domain. May raise Refused."""
        ...


def accept(
    caller: Caller,
    submissions: Sequence[Submission | Refused],
    *,
    remember: Callable[[list[Prepared | Refused]], IdempotencyRecord | None] | None = None,
) -> list[Prepared | Refused]:
    """Take messages in, all six steps: one result per submission, the stored Prepared or its refusal.

    A submission already refused while it was parsed (an invalid item of a batch) keeps its place. `remember`
    gives the answer to store under an idempotency key, in the same transaction. Raises Refused when the whole
    request is refused (the organization rejects while paused or over its limit), and DuplicateRequest when a
    concurrent request took the idempotency key first; nothing is stored then."""
    results = [prepare(caller, submission) for submission in submissions]  # 1-3
    prepared = [r for r in results if isinstance(r, Prepared)]
    screen(caller.organization, prepared)  # 4
    if prepared:
        messages_store(prepared, idempotency=remember(results) if remember else None)  # 5, 6
    return results


def prepare(caller: Caller, submission: Submission | Refused) -> Prepared | Refused:
    """Steps 1-3 for one message: authorise, guard, compose. No query but the memoised domain lookups (and, for
    an API message with a template, the memoised template lookups), so the SMTP server runs it on its event loop."""
    if isinstance(submission, Refused):
        return submission
    try:
        stream_authorise(caller, _submitted_stream(submission))
        domains = [guard(caller, authorise(caller, name), name) for name in submission.sender_domains()]
        return submission.compose(caller, domains[0])
    except Refused as refused:
        return refused


def screen_and_store(prepared: Sequence[Prepared]) -> dict[int, Refused]:
    """Steps 4-6 for the SMTP server's group commit: many sessions' messages, of any organizations. Each message is
    screened on its own, as if it had come alone (a refusal is that message's, by its index); the suppression
    lookups are one query per organization; what passes is stored in one transaction."""
    refused: dict[int, Refused] = {}
    by_organization: dict[int, list[int]] = {}
    for n, p in enumerate(prepared):
        by_organization.setdefault(p.message.organization_id, []).append(n)
    for indexes in by_organization.values():
        organization = prepared[indexes[0]].message.organization
        found = _suppressed_by_stream(organization, [prepared[n] for n in indexes])
        for n in indexes:
            _mark_suppressed([prepared[n]], found[prepared[n].message.stream_id])
            try:
                holds_screen(organization=organization, prepared=[prepared[n]])
            except Refused as exc:
                refused[n] = exc
    accepted = [p for n, p in enumerate(prepared) if n not in refused]
    if accepted:
        messages_store(accepted)
    return refused


# --- the steps ------------------------------------------------------------------------------------------------


def authorise(caller: Caller, domain_name: str, *, what: str = "From") -> Domain:
    """1. The caller's domain that may send as `domain_name` (itself or, where allowed, a parent)."""
    key = domain_name.lower()
    if key not in caller.domains:
        caller.domains[key] = _caller_domain(caller, key)
    domain = caller.domains[key]
    if domain is None:
        raise Refused(
            f"{domain_name} is not a sending domain of this organization.",
            code="domain_not_allowed",
            http_status=403,
            fields={"from": [f"Add and verify {domain_name} before sending from it."]},
            smtp_reply=f"550 5.7.1 {what} domain {domain_name} is not allowed for this credential",
        )
    return domain


def _submitted_stream(submission: Submission) -> str:
    """The stream a submission asks for (its send options), `transactional` when it names none."""
    options = getattr(submission, "options", None)
    return getattr(options, "stream", None) or "transactional"


def stream_authorise(caller: Caller, stream: str | None) -> None:
    """1. An API key limited to some streams (ApiKey.allowed_streams) sends only into those; mail naming no
    stream goes on `transactional`, so it needs that one."""
    key = caller.api_key
    if stream is None or key is None or not key.allowed_streams or stream in key.allowed_streams:
        return
    raise Refused(
        f"This API key may not send into the stream {stream!r}.",
        code="stream_not_allowed",
        http_status=403,
        fields={"stream": [f"One of {', '.join(key.allowed_streams)}."]},
        smtp_reply=f"550 5.7.1 Stream {stream} is not allowed for this credential",
    )


def _caller_domain(caller: Caller, domain_name: str) -> Domain | None:
    domain = sender_domain(caller.organization, domain_name)
    if domain is None:
        return None
    if caller.api_key is not None and caller.api_key.allowed_domains:
        # A key limited to some sender domains (by name) answers like a domain that is not the organization's.
        return domain if domain.name in caller.api_key.allowed_domains else None
    if caller.smtp_credential is None:
        return domain
    allowed = {d.pk for d in caller.smtp_credential.allowed_domains.all()}
    return None if allowed and domain.pk not in allowed else domain


def guard(caller: Caller, domain: Domain, from_domain: str) -> Domain:
    """2. Refuse mail receivers would treat as spoofed, and mail of an unverified domain."""
    refusal = domain_refusal(domain, from_domain)
    if refusal is not None:
        raise Refused(
            refusal.message,
            code=refusal.code,
            http_status=403,
            fields={"from": [refusal.message]},
            smtp_reply=f"550 5.7.1 {one_line(refusal.message)}",
        )
    return domain


def screen(organization: Organization, prepared: list[Prepared]) -> None:
    """4. Suppressed recipients become `suppressed` (one query for all), then holds and send limits decide
    (sending.reputation.holds; raises Refused when the organization rejects instead of holding)."""
    if not prepared:
        return
    found = _suppressed_by_stream(organization, prepared)
    for p in prepared:
        _mark_suppressed([p], found[p.message.stream_id])
    holds_screen(organization=organization, prepared=prepared)


def _suppressed_by_stream(organization: Organization, prepared: list[Prepared]) -> dict[int | None, dict]:
    """The suppressions in force for each stream's messages (organization-wide ones and the stream's own): one
    query per stream the messages are on, usually one."""
    by_stream: dict[int | None, list[Prepared]] = {}
    for p in prepared:
        by_stream.setdefault(p.message.stream_id, []).append(p)
    return {
        stream_id: suppressed_addresses(organization.pk, (r.address for p in group for r in p.recipients), stream_id)
        for stream_id, group in by_stream.items()
    }


def _mark_suppressed(prepared: list[Prepared], found: dict[str, Suppression]) -> None:
    if not found:
        return
    for p in prepared:
        for r in p.recipients:
            suppression = found.get(r.address.lower())
            if suppression is not None:
                r.state = RecipientState.SUPPRESSED
                p.suppressed[r.address] = suppression


def messages_store(prepared: Sequence[Prepared], *, idempotency: IdempotencyRecord | None = None) -> None:
    """5 and 6. One transaction for all (of any organizations: the SMTP group commit); delivery enqueued on commit.
    Raises DuplicateRequest when a concurrent request took the idempotency key first."""
    by_organization: dict[int, list[Prepared]] = {}
    for p in prepared:
        by_organization.setdefault(p.message.organization_id, []).append(p)
    if len(by_organization) == 1:
        (group,) = by_organization.values()
        messages_submit(organization=group[0].message.organization, prepared=group, idempotency=idempotency)
        return
    with transaction.atomic():
        for group in by_organization.values():
            messages_submit(organization=group[0].message.organization, prepared=group, idempotency=idempotency)
