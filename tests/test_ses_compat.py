"""The SES v2-compatible API, driven by the real, unmodified clients: boto3's `sesv2` client (endpoint_url pointed
at a Postwerk server on loopback) and django-anymail's Amazon SES backend in a subprocess with its own settings.
What arrives at the recipient's MX is checked as raw bytes; what the client returns (or raises) as the client
gives it. Refused signatures send nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import boto3
import pytest
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from accounts.models import ApiKey, AuditEntry
from accounts.services import api_key_create, api_key_revoke, ses_access_key_issue
from mail.crypto import decrypt
from sending.models import Message, Recipient, RecipientState, Reputation, ReputationScope, ReputationState, Suppression
from sending.reputation.rates import paused_scopes_clear
from sending.templating.service import template_create
from tests.conftest import add_mx_domain, deliver_queued

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "eu-central-1"


@pytest.fixture
def ses_key(organization, domain) -> tuple[str, str]:
    api_key, _ = api_key_create(organization=organization, name="ses")
    return ses_access_key_issue(api_key=api_key)


@pytest.fixture
def ses(live_server, ses_key):  # type: ignore[no-untyped-def]
    access_key_id, secret = ses_key
    return ses_client(live_server.url, access_key_id, secret)


@pytest.fixture
def sink(mx, zone):  # type: ignore[no-untyped-def]
    add_mx_domain(zone, "dest.example", "127.0.0.2")
    return mx("127.0.0.2")


def ses_client(url: str, access_key_id: str, secret: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "sesv2",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        # One attempt: a refusal is seen as the client first meets it, never retried behind the test's back.
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def _arrived(sink, n: int) -> dict[str, EmailMessage]:  # type: ignore[no-untyped-def]
    """Deliver what is queued (as a worker would) and read the `n` messages the MX received, by first recipient."""
    assert deliver_queued() == n
    assert sink.wait_for(n)
    return {m.rcpt_tos[0]: message_from_bytes(m.data, policy=policy.default) for m in sink.messages}


def _notice_template(organization) -> None:  # type: ignore[no-untyped-def]
    template_create(
        organization=organization,
        alias="notice",
        name="Notice",
        subject="Hi {{ name }}",
        text="{{ greeting }} {{ name }}",
    )


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


# --- SendEmail ----------------------------------------------------------------------------------------------------


def test_send_email_simple_arrives_with_its_fields_and_returns_the_message_id(ses, sink):
    answer = ses.send_email(
        FromEmailAddress="Acme <hello@acme.example>",
        Destination={"ToAddresses": ["jane@dest.example"], "BccAddresses": ["audit@dest.example"]},
        ReplyToAddresses=["support@acme.example"],
        Content={
            "Simple": {
                "Subject": {"Data": "Your order 1234", "Charset": "UTF-8"},
                "Body": {"Text": {"Data": "Thanks, Jane!"}, "Html": {"Data": "<p>Thanks, <b>Jane</b>!</p>"}},
                "Headers": [{"Name": "X-Order", "Value": "1234"}],
                "Attachments": [
                    {"FileName": "receipt.txt", "ContentType": "text/plain", "RawContent": b"total: 12 EUR\n"}
                ],
            }
        },
        EmailTags=[{"Name": "campaign", "Value": "orders"}],
    )
    message = Message.objects.get()
    assert answer["MessageId"] == str(message.id)
    assert message.metadata == {"campaign": "orders"}
    mail = _arrived(sink, 2)["jane@dest.example"]
    for received in sink.messages:
        assert received.data.count(b"\r\nBcc:") == 0 and not received.data.startswith(b"Bcc:")
    assert mail["From"] == "Acme <hello@acme.example>"
    assert mail["To"] == "jane@dest.example"
    assert mail["Reply-To"] == "support@acme.example"
    assert mail["Subject"] == "Your order 1234"
    assert mail["X-Order"] == "1234"
    assert mail["DKIM-Signature"] is not None
    assert mail.get_body(("plain",)).get_content() == "Thanks, Jane!\r\n"
    assert mail.get_body(("html",)).get_content() == "<p>Thanks, <b>Jane</b>!</p>\r\n"
    (attachment,) = list(mail.iter_attachments())
    assert (attachment.get_filename(), attachment.get_content()) == ("receipt.txt", "total: 12 EUR\n")
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == ["audit@dest.example", "jane@dest.example"]


def test_send_email_raw_goes_out_as_given_without_its_bcc(ses, sink):
    raw = (
        b"From: Acme <hello@acme.example>\r\n"
        b"To: jane@dest.example\r\n"
        b"Bcc: hidden@dest.example\r\n"
        b"Subject: Raw hello\r\n"
        b"Message-ID: <raw-1@acme.example>\r\n"
        b"X-Postwerk-Stream: broadcast\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Exactly these bytes.\r\n"
    )
    answer = ses.send_email(Content={"Raw": {"Data": raw}})
    message = Message.objects.get()
    assert answer["MessageId"] == str(message.id)
    assert message.stream.name == "transactional"  # the header is no instruction here: the request names none
    assert deliver_queued() == 2
    assert sink.wait_for(2)
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == ["hidden@dest.example", "jane@dest.example"]
    for received in sink.messages:
        data = received.data
        assert b"\r\nBcc:" not in data and b"X-Postwerk-Stream" not in data
        assert b"\r\nMessage-ID: <raw-1@acme.example>\r\n" in data
        assert data.endswith(b"\r\n\r\nExactly these bytes.\r\n")
        assert data.startswith(b"DKIM-Signature:")


def test_send_email_raw_with_destination_sends_only_to_it(ses, sink):
    raw = b"From: hello@acme.example\r\nTo: jane@dest.example\r\nSubject: x\r\n\r\nbody\r\n"
    ses.send_email(
        FromEmailAddress="bounces@acme.example",
        Destination={"ToAddresses": ["joe@dest.example"]},
        Content={"Raw": {"Data": raw}},
    )
    assert deliver_queued() == 1
    assert sink.wait_for(1)
    assert sink.messages[0].rcpt_tos == ["joe@dest.example"]


def test_send_email_template_renders_the_named_template(ses, sink, organization):
    template_create(
        organization=organization,
        alias="welcome",
        name="Welcome",
        subject="Welcome, {{ name }}",
        text="Hello {{ name }}, your plan is {{ plan }}.",
    )
    answer = ses.send_email(
        FromEmailAddress="hello@acme.example",
        Destination={"ToAddresses": ["jane@dest.example"]},
        Content={"Template": {"TemplateName": "welcome", "TemplateData": json.dumps({"name": "Jane", "plan": "Pro"})}},
    )
    assert answer["MessageId"] == str(Message.objects.get().id)
    mail = _arrived(sink, 1)["jane@dest.example"]
    assert mail["Subject"] == "Welcome, Jane"
    assert mail.get_body(("plain",)).get_content().strip() == "Hello Jane, your plan is Pro."


def test_send_bulk_email_sends_each_entry_with_its_data_and_reports_each(ses, sink, organization):
    _notice_template(organization)
    answer = ses.send_bulk_email(
        FromEmailAddress="hello@acme.example",
        DefaultContent={
            "Template": {"TemplateName": "notice", "TemplateData": json.dumps({"greeting": "Hello", "name": "you"})}
        },
        BulkEmailEntries=[
            {
                "Destination": {"ToAddresses": ["jane@dest.example"]},
                "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": '{"name": "Jane"}'}},
            },
            {"Destination": {"ToAddresses": ["joe@dest.example"]}},
            {"Destination": {"ToAddresses": ["not an address"]}},
        ],
    )
    results = answer["BulkEmailEntryResults"]
    ids = {str(m.id) for m in Message.objects.all()}
    assert [r["Status"] for r in results] == ["SUCCESS", "SUCCESS", "INVALID_PARAMETER"]
    assert {results[0]["MessageId"], results[1]["MessageId"]} == ids
    assert "Destination.ToAddresses" in results[2]["Error"]
    bodies = _arrived(sink, 2)
    assert bodies["jane@dest.example"]["Subject"] == "Hi Jane"
    assert bodies["jane@dest.example"].get_body(("plain",)).get_content().strip() == "Hello Jane"
    assert bodies["joe@dest.example"].get_body(("plain",)).get_content().strip() == "Hello you"


# --- errors as SES answers them -----------------------------------------------------------------------------------


def _simple(**overrides: object) -> dict:
    request = {
        "FromEmailAddress": "hello@acme.example",
        "Destination": {"ToAddresses": ["jane@dest.example"]},
        "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}},
    }
    return request | overrides


def test_refusals_are_ses_errors_with_their_codes_and_statuses(ses, organization):
    with pytest.raises(ClientError) as exc:
        ses.send_email(**_simple(FromEmailAddress="hello@elsewhere.example"))
    assert _error(exc)[:2] == (400, "MessageRejected")
    assert "elsewhere.example" in _error(exc)[2]

    with pytest.raises(ClientError) as exc:
        ses.send_email(**_simple(Destination={"ToAddresses": ["nope"]}))
    assert _error(exc)[:2] == (400, "BadRequestException")
    assert _error(exc)[2].startswith("Destination.ToAddresses:")

    with pytest.raises(ClientError) as exc:
        ses.send_email(**_simple(Content={"Template": {"TemplateName": "missing", "TemplateData": "{}"}}))
    assert _error(exc)[:2] == (404, "NotFoundException")

    with pytest.raises(ClientError) as exc:
        ses.send_email(**_simple(ConfigurationSetName="no-such-set"))
    assert _error(exc)[:2] == (404, "NotFoundException")

    raw = b"From: hello@acme.example\r\nTo: jane@dest.example\r\nSubject: x\r\n\r\nbody\r\n"
    with pytest.raises(ClientError) as exc:
        ses.send_email(FromEmailAddress="bounce@elsewhere.example", Content={"Raw": {"Data": raw}})
    assert _error(exc)[:2] == (400, "MailFromDomainNotVerifiedException")
    assert not Message.objects.exists()


def test_a_paused_organization_that_rejects_answers_account_suspended(ses, organization):
    organization.limit_action = "reject"
    organization.save(update_fields=["limit_action"])
    Reputation.objects.create(
        organization=organization,
        scope=ReputationScope.ORGANIZATION,
        scope_id=organization.pk,
        state=ReputationState.PAUSED,
    )
    paused_scopes_clear()  # this process's cached list of paused scopes
    try:
        with pytest.raises(ClientError) as exc:
            ses.send_email(**_simple())
    finally:
        paused_scopes_clear()  # no later test may find this organization paused
    assert _error(exc)[:2] == (400, "AccountSuspendedException")
    assert not Message.objects.exists()


def test_a_key_without_the_send_scope_is_denied(live_server, organization, domain):
    api_key, _ = api_key_create(organization=organization, name="read-only", scopes=["messages:read"])
    client = ses_client(live_server.url, *ses_access_key_issue(api_key=api_key))
    with pytest.raises(ClientError) as exc:
        client.send_email(**_simple())
    assert _error(exc)[:2] == (403, "AccessDeniedException")


# --- signatures ---------------------------------------------------------------------------------------------------


def test_unknown_key_wrong_secret_and_revoked_key_are_refused_and_send_nothing(live_server, ses_key, organization):
    access_key_id, secret = ses_key
    with pytest.raises(ClientError) as exc:
        ses_client(live_server.url, "PWKSUNKNOWNUNKNOWN00", secret).send_email(**_simple())
    assert _error(exc) == (403, "UnrecognizedClientException", "The security token included in the request is invalid.")

    with pytest.raises(ClientError) as exc:
        ses_client(live_server.url, access_key_id, secret[:-1] + ("A" if secret[-1] != "A" else "B")).send_email(
            **_simple()
        )
    status, code, message = _error(exc)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match the signature you provided.")

    api_key_revoke(api_key=ApiKey.objects.get(ses_access_key_id=access_key_id))
    with pytest.raises(ClientError) as exc:
        ses_client(live_server.url, access_key_id, secret).send_email(**_simple())
    assert _error(exc)[:2] == (403, "UnrecognizedClientException")
    assert not Message.objects.exists()


def _signed_at(url: str, access_key_id: str, secret: str, when: datetime, body: bytes) -> urllib.request.Request:
    """A SendEmail request signed by botocore's own signer as of `when`: its steps (canonical request, string to
    sign, signature) run on a request whose signing time is set, as add_auth would set it from the clock."""
    request = AWSRequest(
        method="POST", url=url + "/v2/email/outbound-emails", data=body, headers={"Content-Type": "application/json"}
    )
    request.context["timestamp"] = when.strftime(SIGV4_TIMESTAMP)
    request.headers["X-Amz-Date"] = request.context["timestamp"]
    signer = SigV4Auth(Credentials(access_key_id, secret), "ses", REGION)
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signed_headers = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, SignedHeaders={signed_headers}, Signature={signature}"
    )
    prepared = request.prepare()
    return urllib.request.Request(prepared.url, data=body, headers=dict(prepared.headers), method="POST")  # noqa: S310


def _send(request: urllib.request.Request) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the loopback live server
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_a_signature_older_than_five_minutes_is_refused_as_expired(live_server, ses_key):
    access_key_id, secret = ses_key
    body = json.dumps(_simple()).encode()
    old = datetime.now(UTC) - timedelta(minutes=6)
    status, headers, answer = _send(_signed_at(live_server.url, access_key_id, secret, old, body))
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert answer["message"].startswith(f"Signature expired: {old.strftime('%Y%m%dT%H%M%SZ')} is now earlier than ")
    assert not Message.objects.exists()

    # The same request signed a minute ago is within the allowed skew, and accepted.
    status, _, answer = _send(_signed_at(live_server.url, access_key_id, secret, old + timedelta(minutes=5), body))
    assert status == 200 and answer["MessageId"] == str(Message.objects.get().id)


def test_a_changed_body_or_no_signature_is_refused(live_server, ses_key):
    access_key_id, secret = ses_key
    body = json.dumps(_simple()).encode()
    request = _signed_at(live_server.url, access_key_id, secret, datetime.now(UTC), body)
    request.data = body.replace(b"jane@", b"evil@")
    request.headers["Content-length"] = str(len(request.data))
    status, headers, _ = _send(request)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")

    unsigned = urllib.request.Request(  # noqa: S310 - the loopback live server
        live_server.url + "/v2/email/outbound-emails", data=body, headers={"Content-Type": "application/json"}
    )
    status, headers, answer = _send(unsigned)
    assert (status, headers["x-amzn-ErrorType"], answer) == (
        403,
        "MissingAuthenticationTokenException",
        {"message": "Missing Authentication Token"},
    )
    assert not Message.objects.exists()


# --- suppression list ---------------------------------------------------------------------------------------------


def test_suppression_calls_put_get_list_delete_and_a_suppressed_recipient_is_not_sent(ses, sink, organization):
    ses.put_suppressed_destination(EmailAddress="Jane@dest.example", Reason="COMPLAINT")
    got = ses.get_suppressed_destination(EmailAddress="jane@dest.example")["SuppressedDestination"]
    assert (got["EmailAddress"], got["Reason"]) == ("jane@dest.example", "COMPLAINT")
    assert Suppression.objects.get(organization=organization).created_by == "api-key:ses"

    ses.put_suppressed_destination(EmailAddress="joe@dest.example", Reason="BOUNCE")
    listed = ses.list_suppressed_destinations()["SuppressedDestinationSummaries"]
    assert sorted((s["EmailAddress"], s["Reason"]) for s in listed) == [
        ("jane@dest.example", "COMPLAINT"),
        ("joe@dest.example", "BOUNCE"),
    ]
    only = ses.list_suppressed_destinations(Reasons=["BOUNCE"])["SuppressedDestinationSummaries"]
    assert [s["EmailAddress"] for s in only] == ["joe@dest.example"]
    first = ses.list_suppressed_destinations(PageSize=1)
    second = ses.list_suppressed_destinations(PageSize=1, NextToken=first["NextToken"])
    assert {
        first["SuppressedDestinationSummaries"][0]["EmailAddress"],
        second["SuppressedDestinationSummaries"][0]["EmailAddress"],
    } == {"jane@dest.example", "joe@dest.example"}
    assert "NextToken" not in second

    ses.send_email(**_simple())
    assert Recipient.objects.get().state == RecipientState.SUPPRESSED
    assert deliver_queued() == 0

    ses.delete_suppressed_destination(EmailAddress="jane@dest.example")
    with pytest.raises(ClientError) as exc:
        ses.get_suppressed_destination(EmailAddress="jane@dest.example")
    assert _error(exc)[:2] == (404, "NotFoundException")
    with pytest.raises(ClientError) as exc:
        ses.delete_suppressed_destination(EmailAddress="jane@dest.example")
    assert _error(exc)[:2] == (404, "NotFoundException")


# --- django-anymail's Amazon SES backend --------------------------------------------------------------------------

ANYMAIL_SCRIPT = """
import json, sys
import django
django.setup()
from anymail.message import AnymailMessage
message = AnymailMessage(
    subject="Anymail through SES", body="Plain body", from_email="Acme <hello@acme.example>",
    to=["jane@dest.example"], cc=["joe@dest.example"], reply_to=["support@acme.example"],
    headers={"X-Ref": "A-1"},
)
message.attach_alternative("<p>HTML body</p>", "text/html")
message.attach("data.csv", "a,b\\n1,2\\n", "text/csv")
message.tags = ["welcome"]
message.metadata = {"user_id": "42"}
message.send()
status = message.anymail_status
print(json.dumps({"message_id": status.message_id, "status": sorted(status.status)}))
"""


def _anymail(script: str, url: str, access_key_id: str, secret: str) -> dict:
    """Run `script` in a client application's process (its own Django settings: tests/ses_anymail_settings.py)
    and return the JSON it prints last."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.ses_anymail_settings",
        "SES_ENDPOINT_URL": url,
        "SES_ACCESS_KEY_ID": access_key_id,
        "SES_SECRET_ACCESS_KEY": secret,
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }
    done = subprocess.run(  # noqa: S603 - this interpreter, this script
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_anymail_amazon_ses_backend_sends_through_postwerk(live_server, ses_key, sink):
    result = _anymail(ANYMAIL_SCRIPT, live_server.url, *ses_key)
    message = Message.objects.get()
    assert result == {"message_id": str(message.id), "status": ["queued"]}
    mail = _arrived(sink, 2)["jane@dest.example"]
    assert mail["Subject"] == "Anymail through SES"
    assert mail["Cc"] == "joe@dest.example"
    assert mail["Reply-To"] == "support@acme.example"
    assert mail["X-Ref"] == "A-1"
    assert mail.get_body(("html",)).get_content().strip() == "<p>HTML body</p>"
    (attachment,) = list(mail.iter_attachments())
    assert (attachment.get_filename(), attachment.get_content()) == ("data.csv", "a,b\r\n1,2\r\n")
    assert mail["X-Metadata"] == '{"user_id": "42"}'  # anymail's own header for metadata over SES


# --- issuing access keys ------------------------------------------------------------------------------------------


def test_provision_prints_an_ses_credential_that_signs(live_server, organization):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("provision", "--org", "Acme", "--ses-credential", "--json", stdout=out)
    result = json.loads(out.getvalue())
    client = ses_client(live_server.url, result["ses_access_key_id"], result["ses_secret_access_key"])
    client.put_suppressed_destination(EmailAddress="jane@dest.example", Reason="BOUNCE")
    assert Suppression.objects.get(organization=organization).address == "jane@dest.example"
    # Kept encrypted at rest, never as given.
    api_key = ApiKey.objects.get(ses_access_key_id=result["ses_access_key_id"])
    assert result["ses_secret_access_key"] not in api_key.ses_secret_encrypted
    assert decrypt(api_key.ses_secret_encrypted).decode() == result["ses_secret_access_key"]


def test_the_api_issues_an_access_key_with_a_new_api_key_and_replaces_it(live_server, api):
    created = api.post(
        "/api/v1/api-keys",
        {"name": "ses-app", "scopes": ["send", "suppressions"], "ses_access_key": True},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    old_id, old_secret = body["ses_access_key_id"], body["ses_secret_access_key"]
    assert api.get(f"/api/v1/api-keys/{body['id']}").json()["ses_access_key_id"] == old_id
    assert "ses_secret_access_key" not in api.get(f"/api/v1/api-keys/{body['id']}").json()
    ses_client(live_server.url, old_id, old_secret).list_suppressed_destinations()

    replaced = api.post(f"/api/v1/api-keys/{body['id']}/ses-access-key")
    assert replaced.status_code == 200
    new = replaced.json()
    assert new["ses_access_key_id"] != old_id
    assert (
        ses_client(
            live_server.url, new["ses_access_key_id"], new["ses_secret_access_key"]
        ).list_suppressed_destinations()["SuppressedDestinationSummaries"]
        == []
    )
    with pytest.raises(ClientError) as exc:
        ses_client(live_server.url, old_id, old_secret).list_suppressed_destinations()
    assert _error(exc)[:2] == (403, "UnrecognizedClientException")
    actions = list(AuditEntry.objects.filter(action="api_key.ses_access_key_issued").values_list("changes", flat=True))
    assert [a["ses_access_key_id"] for a in actions] == [old_id, new["ses_access_key_id"]]


ANYMAIL_TEMPLATE_SCRIPT = """
import json
import django
django.setup()
from anymail.message import AnymailMessage
message = AnymailMessage(from_email="hello@acme.example", to=["jane@dest.example", "Joe <joe@dest.example>"])
message.template_id = "notice"
message.merge_global_data = {"greeting": "Hello"}
message.merge_data = {"jane@dest.example": {"name": "Jane"}, "joe@dest.example": {"name": "Joe"}}
message.merge_metadata = {"jane@dest.example": {"user": "1"}, "joe@dest.example": {"user": "2"}}
message.send()
recipients = message.anymail_status.recipients
print(json.dumps({address: [r.status, r.message_id] for address, r in recipients.items()}))
"""


def test_anymail_amazon_ses_backend_sends_a_template_with_merge_data_as_a_bulk_send(
    live_server, ses_key, sink, organization
):
    _notice_template(organization)
    result = _anymail(ANYMAIL_TEMPLATE_SCRIPT, live_server.url, *ses_key)
    messages = {m.recipients.get().address: m for m in Message.objects.all()}
    assert result == {
        "jane@dest.example": ["queued", str(messages["jane@dest.example"].id)],
        "joe@dest.example": ["queued", str(messages["joe@dest.example"].id)],
    }
    bodies = _arrived(sink, 2)
    assert bodies["jane@dest.example"]["Subject"] == "Hi Jane"
    assert bodies["joe@dest.example"]["To"] == "Joe <joe@dest.example>"
    assert bodies["joe@dest.example"].get_body(("plain",)).get_content().strip() == "Hello Joe"
