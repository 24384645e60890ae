"""A test message a member sends from a domain's dashboard page: an ordinary message built like the send API's
and taken in by the one accept pipeline (authorise, guard, compose, screen, store, enqueue), so it is refused,
held, suppressed or delivered exactly as the application's mail would be. Audited as `domain.test_message_sent`."""

from __future__ import annotations

import html

from django.db import transaction

from accounts.audit import audit_record
from accounts.models import Organization
from mail.addresses import Mailbox, parse_mailbox
from sending.errors import Refused
from sending.intake.accept import Caller, accept
from sending.intake.composer import Draft
from sending.intake.submission import ApiSubmission, Prepared
from sending.models import Domain

TEST_TAG = "postwerk-test"


def domain_test_message_draft(*, domain: Domain, local_part: str, to: Mailbox) -> Draft:
    sender = f"{local_part}@{domain.name}"
    paragraphs = [
        f"This is a test message sent from the Postwerk dashboard as {sender}.",
        "If it reached the inbox, the domain's DKIM signature, SPF and return path work for this receiver: "
        "the message's Authentication-Results header says what the receiver found.",
    ]
    return Draft(
        sender=parse_mailbox(sender),
        to=[to],
        subject=f"Postwerk test message from {domain.name}",
        text="\n\n".join(paragraphs) + "\n",
        html="".join(f"<p>{html.escape(p)}</p>" for p in paragraphs),
        tags=[TEST_TAG],
    )


def domain_test_message_send(*, organization: Organization, domain: Domain, local_part: str, to: Mailbox) -> Prepared:
    """Accept one test message from `local_part@domain` to `to`; raises Refused with the pipeline's own reason."""
    if domain.organization_id != organization.pk:
        raise Refused(f"{domain.name} is not a sending domain of this organization.", http_status=403)
    # The message and its audit entry commit together; delivery is enqueued once both have.
    with transaction.atomic():
        (result,) = accept(
            Caller(organization),
            [ApiSubmission(domain_test_message_draft(domain=domain, local_part=local_part, to=to))],
        )
        if isinstance(result, Refused):
            raise result
        audit_record(
            organization=organization,
            action="domain.test_message_sent",
            target=domain,
            changes={"from": result.message.mail_from, "to": to.address, "message": str(result.message.pk)},
        )
    return result
