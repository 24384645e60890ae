"""SES v2 request bodies (as boto3's `sesv2` client serialises them) turned into the one accept pipeline's
submissions (sending.intake.accept): Simple and Template content become the send API's own fields, validated by
its serializer; Raw content is a submitted message, normalised as the SMTP path normalises it. Nothing here
decides whether mail may go: the pipeline does, and its refusals become SES errors (sending.compat.ses.errors).

Fields Postwerk has no use for are ignored, and listed in the README's table with why.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError

from mail.raw_message import header_addresses, normalize_newlines, parse_headers
from sending.api.serializers import SendMessageSerializer
from sending.compat.ses.errors import SesError, bad_request, fields_message
from sending.errors import Refused
from sending.intake.smtp_intake import SmtpSubmission
from sending.intake.submission import ApiSubmission
from sending.streams.options import SendOptions

# Where a stream's name comes from, for errors: a Postwerk stream is what SES calls a configuration set.
STREAM_FIELD = "ConfigurationSetName"


def send_email_submission(body: dict, serializer: SendMessageSerializer) -> ApiSubmission | SmtpSubmission:
    """SendEmail's body as one submission. Raises SesError (BadRequestException) for a body SES would refuse."""
    content = _object(body.get("Content"), "Content")
    kinds = [kind for kind in ("Simple", "Raw", "Template") if content.get(kind) is not None]
    if len(kinds) != 1:
        raise bad_request("Content must have exactly one of Simple, Raw or Template.")
    (kind,) = kinds
    if kind == "Raw":
        return raw_submission(body, _object(content["Raw"], "Content.Raw"))
    fields = _envelope_fields(body) | _recipient_fields(_object(body.get("Destination") or {}, "Destination"))
    part = _object(content[kind], f"Content.{kind}")
    fields |= _headers_and_attachments(part, f"Content.{kind}")
    if kind == "Simple":
        fields |= _simple_fields(part)
    else:
        fields |= _template_fields(part, model=_template_data(part.get("TemplateData"), "Content.Template"))
    return api_submission(fields, serializer)


def bulk_submissions(body: dict, serializer: SendMessageSerializer) -> list[ApiSubmission | Refused]:
    """SendBulkEmail's entries, each one template message; an invalid entry is refused on its own."""
    entries = body.get("BulkEmailEntries")
    if not isinstance(entries, list) or not entries:
        raise bad_request("BulkEmailEntries: a non-empty list is required.")
    limit = settings.POSTWERK_BATCH_MAX_MESSAGES
    if len(entries) > limit:
        raise bad_request(f"BulkEmailEntries: at most {limit} entries; got {len(entries)}.")
    default = _object(_object(body.get("DefaultContent"), "DefaultContent").get("Template"), "DefaultContent.Template")
    common = _envelope_fields(body) | _template_fields(default, model={})
    default_model = _template_data(default.get("TemplateData"), "DefaultContent.Template")
    default_tags = _tags(body.get("DefaultEmailTags"), "DefaultEmailTags")
    default_headers = _headers(default.get("Headers"), "DefaultContent.Template.Headers")
    attachments = _headers_and_attachments({"Attachments": default.get("Attachments")}, "DefaultContent.Template")
    submissions: list[ApiSubmission | Refused] = []
    for n, entry in enumerate(entries):
        try:
            submissions.append(
                _bulk_entry(n, entry, common | attachments, default_model, default_tags, default_headers, serializer)
            )
        except SesError as exc:
            submissions.append(Refused(exc.message, code="invalid"))
    return submissions


def _bulk_entry(
    n: int,
    entry: object,
    common: dict,
    default_model: dict,
    default_tags: dict,
    default_headers: dict,
    serializer: SendMessageSerializer,
) -> ApiSubmission:
    where = f"BulkEmailEntries[{n}]"
    entry = _object(entry, where)
    replacement = _object(entry.get("ReplacementEmailContent") or {}, f"{where}.ReplacementEmailContent")
    template = _object(replacement.get("ReplacementTemplate") or {}, f"{where}.ReplacementTemplate")
    # An entry's data and tags replace the defaults' of the same name; the defaults fill in the rest.
    model = default_model | _template_data(template.get("ReplacementTemplateData"), f"{where}.ReplacementTemplate")
    fields = common | _recipient_fields(_object(entry.get("Destination"), f"{where}.Destination"))
    fields["model"] = model
    fields["metadata"] = default_tags | _tags(entry.get("ReplacementTags"), f"{where}.ReplacementTags")
    fields["headers"] = default_headers | _headers(entry.get("ReplacementHeaders"), f"{where}.ReplacementHeaders")
    return api_submission(fields, serializer)


def api_submission(fields: dict, serializer: SendMessageSerializer) -> ApiSubmission:
    """The send API's own validation of the fields (its serializer), errors named by their SES fields."""
    try:
        validated = serializer.run_validation(fields)
    except ValidationError as exc:
        raise bad_request(fields_message(exc.detail)) from exc
    options = dataclasses.replace(serializer.to_options(validated), stream_field=STREAM_FIELD)
    return ApiSubmission(serializer.to_draft(validated), False, options, template=serializer.template_ref(validated))


def raw_submission(body: dict, raw: dict) -> SmtpSubmission:
    """Raw content: the message as given, its envelope from the request (Destination, FromEmailAddress) or,
    as SES does, from its own To, Cc and Bcc and From headers. Bcc is removed before it is stored."""
    try:
        data = normalize_newlines(base64.b64decode(str(raw.get("Data") or ""), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise bad_request("Content.Raw.Data: not base64.") from exc
    if not data.strip():
        raise bad_request("Content.Raw.Data: the message is empty.")
    headers = parse_headers(data)
    destination = _object(body.get("Destination") or {}, "Destination")
    recipients = [a for key in ("ToAddresses", "CcAddresses", "BccAddresses") for a in _strings(destination, key)]
    if not recipients:
        recipients = header_addresses(headers, "to", "cc", "bcc")
    if not recipients:
        raise bad_request("Destination: no recipients, and the message has no To, Cc or Bcc header.")
    limit = settings.POSTWERK_MAX_RECIPIENTS
    if len(recipients) > limit:
        raise bad_request(f"Destination: at most {limit} recipients; got {len(recipients)}.")
    mail_from = body.get("FromEmailAddress") or next(iter(header_addresses(headers, "from")), "")
    if not isinstance(mail_from, str) or not mail_from:
        raise bad_request("FromEmailAddress: required when the message has no From header.")
    options = SendOptions(stream=_stream(body), stream_field=STREAM_FIELD)
    return SmtpSubmission(mail_from=mail_from, rcpt_tos=recipients, raw=data, options=options)


# --- the pieces --------------------------------------------------------------------------------------------------


def _envelope_fields(body: dict) -> dict:
    return {
        "from": [body.get("FromEmailAddress")],
        "reply_to": _strings(body, "ReplyToAddresses"),
        "metadata": _tags(body.get("EmailTags"), "EmailTags"),
        "stream": _stream(body),
    }


def _recipient_fields(destination: dict) -> dict:
    return {
        "to": _strings(destination, "ToAddresses"),
        "cc": _strings(destination, "CcAddresses"),
        "bcc": _strings(destination, "BccAddresses"),
    }


def _simple_fields(simple: dict) -> dict:
    body = _object(simple.get("Body") or {}, "Content.Simple.Body")
    return {
        "subject": _data(simple.get("Subject"), "Content.Simple.Subject"),
        "text": _data(body.get("Text"), "Content.Simple.Body.Text") or None,
        "html": _data(body.get("Html"), "Content.Simple.Body.Html") or None,
    }


def _template_fields(template: dict, *, model: dict) -> dict:
    """A template by name (Postwerk's alias, or its id); an ARN's last part is its name."""
    name = template.get("TemplateName") or str(template.get("TemplateArn") or "").rpartition("/")[2]
    if not name:
        raise bad_request("TemplateName: required (or TemplateArn).")
    if template.get("TemplateContent") is not None:
        raise bad_request("TemplateContent: inline templates are not supported; create the template and name it.")
    return {"template": name, "model": model}


def _headers_and_attachments(part: dict, where: str) -> dict:
    fields: dict[str, Any] = {}
    if part.get("Headers") is not None:
        fields["headers"] = _headers(part.get("Headers"), f"{where}.Headers")
    if part.get("Attachments") is not None:
        fields["attachments"] = [
            _attachment(a, f"{where}.Attachments[{n}]")
            for n, a in enumerate(_list(part.get("Attachments"), f"{where}.Attachments"))
        ]
    return fields


def _attachment(item: object, where: str) -> dict:
    item = _object(item, where)
    inline = item.get("ContentDisposition") == "INLINE" or item.get("ContentId")
    return {
        "filename": item.get("FileName"),
        "content_type": item.get("ContentType") or "application/octet-stream",
        "content": item.get("RawContent"),  # botocore sends the blob base64-encoded, as the send API takes it
        "content_id": (item.get("ContentId") or "").strip("<>") or None if inline else None,
    }


def _headers(items: object, where: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for n, item in enumerate(_list(items, where)):
        item = _object(item, f"{where}[{n}]")
        name, value = item.get("Name"), item.get("Value")
        if not isinstance(name, str) or not isinstance(value, str):
            raise bad_request(f"{where}[{n}]: Name and Value are required strings.")
        if name.lower() in (h.lower() for h in headers):
            raise bad_request(f"{where}: the header {name} is given twice.")
        headers[name] = value
    return headers


def _tags(items: object, where: str) -> dict[str, str]:
    """Message tags (Name, Value) are kept as the message's metadata, which its events carry."""
    tags: dict[str, str] = {}
    for n, item in enumerate(_list(items, where)):
        item = _object(item, f"{where}[{n}]")
        name, value = item.get("Name"), item.get("Value")
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise bad_request(f"{where}[{n}]: Name and Value are required strings.")
        tags[name] = value
    return tags


def _template_data(data: object, where: str) -> dict:
    if data is None or data == "":
        return {}
    try:
        model = json.loads(data) if isinstance(data, str) else None
    except ValueError as exc:
        raise bad_request(f"{where}.TemplateData: not valid JSON ({exc}).") from exc
    if not isinstance(model, dict):
        raise bad_request(f"{where}.TemplateData: a JSON object is required.")
    return model


def _data(content: object, where: str) -> str:
    """SES's {Data, Charset}: Postwerk writes every part in UTF-8, whatever the Charset was."""
    if content is None:
        return ""
    value = _object(content, where).get("Data")
    if not isinstance(value, str):
        raise bad_request(f"{where}.Data: a string is required.")
    return value


def _stream(body: dict) -> str | None:
    name = body.get("ConfigurationSetName")
    if name is not None and not isinstance(name, str):
        raise bad_request("ConfigurationSetName: a string is required.")
    return name or None


def _strings(container: dict, key: str) -> list:
    value = container.get(key)
    return [] if value is None else _list(value, key)


def _object(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise bad_request(f"{where}: an object is required.")
    return value


def _list(value: object, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"{where}: a list is required.")
    return value
