"""Request and response shapes of the send API. Validation names the exact field that is wrong."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mail.addresses import AddressError, Mailbox, parse_mailbox
from sending.intake.composer import Attachment, Draft, HeaderError, check_header, has_line_break
from sending.models import FINAL_STATES, Event, Message, Recipient
from sending.streams.options import NORMAL, PRIORITIES, SendOptions, send_at_problem
from sending.templating.compose import TemplateRef


class AddressListField(serializers.ListField):
    """A list of addresses ("Name <a@b>" or "a@b"); a single string is taken as a list of one."""

    child = serializers.CharField(trim_whitespace=False)

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        if isinstance(data, str):
            data = [data]
        values = super().to_internal_value(data)
        mailboxes, errors = [], {}
        for i, value in enumerate(values):
            try:
                mailboxes.append(parse_mailbox(value))
            except AddressError as exc:
                errors[i] = [str(exc)]
        if errors:
            raise serializers.ValidationError(errors)
        return mailboxes


class AttachmentSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=255)
    content_type = serializers.CharField(max_length=255, default="application/octet-stream")
    content = serializers.CharField(help_text="Base64", trim_whitespace=False)
    content_id = serializers.CharField(max_length=255, required=False, allow_null=True, default=None)

    def validate_filename(self, value: str) -> str:
        if has_line_break(value):
            raise serializers.ValidationError("Line breaks are not allowed in a file name.")
        return value

    def validate_content_type(self, value: str) -> str:
        maintype, _, subtype = value.partition("/")
        if not maintype or not subtype or has_line_break(value) or any(c in value for c in ';" '):
            raise serializers.ValidationError("Expected a MIME type such as application/pdf.")
        return value.lower()

    def validate_content_id(self, value: str | None) -> str | None:
        if value is not None and (has_line_break(value) or any(c in value for c in "<> ") or not value):
            raise serializers.ValidationError("A content id is a plain token, without angle brackets.")
        return value

    def validate_content(self, value: str) -> bytes:
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise serializers.ValidationError("Not valid base64.") from exc


def _no_line_breaks(value: str) -> None:
    if has_line_break(value):
        raise serializers.ValidationError("Line breaks are not allowed here.")


class KeyedDictField(serializers.DictField):
    """A DictField whose keys are checked before its values: DRF keys each value's error by its key, and a key
    with NUL or a lone surrogate cannot be rendered as UTF-8 JSON (a 500) nor stored in PostgreSQL's jsonb."""

    def __init__(self, *, max_key_length: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.max_key_length = max_key_length
        super().__init__(**kwargs)

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        if isinstance(data, dict):
            for key in data:
                if not (isinstance(key, str) and 0 < len(key) <= self.max_key_length and key.isprintable()):
                    raise serializers.ValidationError(
                        f"Key {ascii(key)[:60]} must be 1 to {self.max_key_length} printable characters."
                    )
        return super().to_internal_value(data)


def _missing_parts(data: dict) -> dict[str, list[str]]:
    """The recipients or the body a message lacks altogether, by the field to fill in. Presence only (of the
    request's data or of validated attributes): what is wrong inside a given field is that field's own error."""
    errors = {}
    if not any(data.get(kind) for kind in ("to", "cc", "bcc")):
        errors["to"] = ["At least one recipient (to, cc or bcc) is required."]
    if not (data.get("text") or data.get("html") or data.get("template") not in (None, "")):
        errors["text"] = ["A text or html body is required."]
    return errors


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class TemplateRefField(serializers.Field):
    """A template's id (a number) or alias (a string)."""

    def to_internal_value(self, data: object) -> str | int:
        if isinstance(data, bool) or not isinstance(data, int | str) or data == "":
            raise serializers.ValidationError("A template id (a number) or alias (a string).")
        if isinstance(data, str) and (len(data) > 100 or not data.isprintable()):
            raise serializers.ValidationError("An alias is at most 100 printable characters.")
        return data

    def to_representation(self, value: object) -> object:
        return value


class SendMessageSerializer(serializers.Serializer):
    # `from` is a Python keyword, so the field is declared under its JSON name below.
    to = AddressListField(required=False, default=list)
    cc = AddressListField(required=False, default=list)
    bcc = AddressListField(required=False, default=list)
    reply_to = AddressListField(required=False, default=list)
    subject = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=998,
        trim_whitespace=False,
        validators=[_no_line_breaks],
    )
    text = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None, trim_whitespace=False)
    html = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None, trim_whitespace=False)
    headers = KeyedDictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        max_key_length=76,
        required=False,
        default=dict,
    )
    attachments = AttachmentSerializer(many=True, required=False, default=list)
    report_suppressed = serializers.BooleanField(
        default=False, help_text="Say in the response which recipients are suppressed, and why."
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, max_length=20
    )
    metadata = KeyedDictField(
        child=serializers.CharField(allow_blank=True, max_length=1000), max_key_length=100, required=False, default=dict
    )
    stream = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        max_length=64,
        help_text="The message stream (default: transactional).",
    )
    send_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Send later: up to 7 days ahead (ISO 8601)."
    )
    deliver_within = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=7 * 24 * 3600,
        help_text="Seconds: a recipient not delivered by then becomes `expired` (retries stop).",
    )
    priority = serializers.ChoiceField(choices=PRIORITIES, default=NORMAL)
    track_opens = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Open tracking for this message: true or false; null or absent: the stream's, else the domain's "
        "setting. true needs the domain's tracking host (400 naming the field otherwise).",
    )
    track_clicks = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Click tracking (links of the HTML part) for this message: true or false; null or absent: the "
        "stream's, else the domain's setting. true needs the domain's tracking host (400 naming the field otherwise).",
    )
    template = TemplateRefField(
        required=False,
        default=None,
        help_text="A template's id or alias: subject, html and text are rendered from it with `model`",
    )
    model = serializers.DictField(
        required=False, default=None, help_text="The template's variables (any JSON object); each message its own"
    )

    def get_fields(self):  # type: ignore[no-untyped-def]
        fields = super().get_fields()
        fields["from"] = AddressListField(min_length=1, max_length=1, help_text="The sender, one address")
        return fields

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        errors = {}
        for name, header_value in value.items():
            try:
                check_header(name, header_value)
            except HeaderError as exc:
                errors[name] = [str(exc)]
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_send_at(self, value: datetime | None) -> datetime | None:
        problem = None if value is None else send_at_problem(value)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate_metadata(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50:
            raise serializers.ValidationError("At most 50 metadata keys.")
        return value

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            # DRF stops at field errors before validate(), so `{}` would name only `from`. Add what is missing
            # altogether (no recipient, no body), so one answer names every field to fix.
            if not isinstance(data, dict) or not isinstance(exc.detail, dict):
                raise
            raise serializers.ValidationError({**_missing_parts(data), **exc.detail}) from exc

    def validate(self, attrs: dict) -> dict:
        errors = _missing_parts(attrs)
        recipients: list[Mailbox] = attrs["to"] + attrs["cc"] + attrs["bcc"]
        limit = settings.POSTWERK_MAX_RECIPIENTS
        if len(recipients) > limit:
            errors["to"] = [f"At most {limit} recipients (to, cc and bcc together); got {len(recipients)}."]
        if attrs["template"] is not None:
            for name in ("subject", "html", "text"):
                if attrs[name]:
                    errors[name] = ["Not with a template: the template gives it."]
        elif attrs["model"] is not None:
            errors["model"] = ["A model is only used with a template."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_options(self, data: dict) -> SendOptions:
        """The send options of validated data: stream, schedule, deadline, priority and tracking."""
        return SendOptions(
            stream=data.get("stream"),
            send_at=data.get("send_at"),
            deliver_within=data.get("deliver_within"),
            priority=data.get("priority", NORMAL),
            track_opens=data.get("track_opens"),
            track_clicks=data.get("track_clicks"),
        )

    def to_draft(self, data: dict | None = None) -> Draft:
        """The Draft of validated data: this serializer's own, or `data` from run_validation() (a batch reuses
        one serializer for every item, since building DRF's fields per instance is costly)."""
        data = self.validated_data if data is None else data
        return Draft(
            sender=data["from"][0],
            to=data["to"],
            cc=data["cc"],
            bcc=data["bcc"],
            reply_to=data["reply_to"],
            subject=data["subject"],
            text=data["text"] if data["text"] else None,
            html=data["html"] if data["html"] else None,
            headers=data["headers"],
            attachments=[Attachment(**a) for a in data["attachments"]],
            tags=data["tags"],
            metadata=data["metadata"],
        )

    @staticmethod
    def template_ref(data: dict) -> TemplateRef | None:
        """The template and model of validated data, if the message names a template."""
        if data["template"] is None:
            return None
        return TemplateRef(template=data["template"], model=data["model"] or {})


class AcceptedRecipientSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    address = serializers.CharField()
    status = serializers.CharField()


class AcceptedMessageSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    message_id = serializers.CharField()
    status = serializers.CharField()
    recipients = AcceptedRecipientSerializer(many=True)


class EventSerializer(serializers.ModelSerializer):
    recipient_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = Event
        fields = ["id", "type", "created_at", "recipient_id", "details"]


class NextAttemptField(serializers.DateTimeField):
    """`next_attempt_at` while another attempt can still come; null once the row's state is final (a delivered
    recipient or a succeeded webhook delivery has no next attempt, whatever the column still holds)."""

    def __init__(self, final_states: tuple[str, ...], **kwargs: object) -> None:
        super().__init__(read_only=True, allow_null=True, **kwargs)
        self.final_states = final_states

    def get_attribute(self, instance: object) -> object:
        if getattr(instance, "state", None) in self.final_states:
            return None
        return super().get_attribute(instance)


class RecipientSerializer(serializers.ModelSerializer):
    next_attempt_at = NextAttemptField(
        FINAL_STATES, help_text="When the next delivery attempt is due; null once the recipient's state is final"
    )
    last_reply = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()

    class Meta:
        model = Recipient
        fields = [
            "id",
            "address",
            "kind",
            "state",
            "attempts",
            "next_attempt_at",
            "last_reply",
            "mx_host",
            "tls",
            "delivered_at",
            "created_at",
            "updated_at",
            "events",
        ]

    def get_last_reply(self, obj: Recipient) -> dict | None:
        if obj.last_code is None:
            return None
        return {"code": obj.last_code, "enhanced": obj.last_enhanced, "text": obj.last_text}

    def get_events(self, obj: Recipient) -> list[dict]:
        events = self.context.get("events_by_recipient", {}).get(obj.pk, [])
        return EventSerializer(events, many=True).data


class MessageSummarySerializer(serializers.ModelSerializer):
    from_ = serializers.CharField(source="mail_from")
    recipients = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "message_id",
            "from_",
            "subject",
            "tags",
            "metadata",
            "size",
            "created_at",
            "recipients",
        ]

    def get_fields(self):  # type: ignore[no-untyped-def]
        # `from` is a Python keyword: declared as from_, answered (and documented in the schema) as "from".
        return {"from" if name == "from_" else name: field for name, field in super().get_fields().items()}

    def get_recipients(self, obj: Message) -> list[dict]:
        return [{"id": str(r.id), "address": r.address, "state": r.state} for r in obj.recipients.all()]


class MessageTemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    alias = serializers.CharField(allow_null=True)
    version = serializers.IntegerField()


class MessageDetailSerializer(MessageSummarySerializer):
    recipients = serializers.SerializerMethodField()
    stream = serializers.SerializerMethodField()

    sandbox = serializers.BooleanField(read_only=True, help_text="Sent with a sandbox key: captured, never delivered.")

    track_opens = serializers.BooleanField(
        read_only=True, allow_null=True, help_text="The message's own open tracking; null: the stream's or domain's."
    )
    track_clicks = serializers.BooleanField(
        read_only=True, allow_null=True, help_text="The message's own click tracking; null: the stream's or domain's."
    )

    template = serializers.SerializerMethodField(
        help_text="The template and version the message was rendered from; null when sent without one (or the "
        "template was deleted since)."
    )

    class Meta(MessageSummarySerializer.Meta):
        fields = [
            *MessageSummarySerializer.Meta.fields,
            "stream",
            "send_at",
            "deliver_by",
            "priority",
            "sandbox",
            "template",
            "track_opens",
            "track_clicks",
        ]

    def get_stream(self, obj: Message) -> str:
        return obj.stream.name if obj.stream is not None else "transactional"

    @extend_schema_field(MessageTemplateSerializer(allow_null=True))
    def get_template(self, obj: Message) -> dict | None:
        version = obj.template_version
        if version is None:
            return None
        return {"id": version.template_id, "alias": version.template.alias, "version": version.number}

    def get_recipients(self, obj: Message) -> list[dict]:
        return RecipientSerializer(obj.recipients.all(), many=True, context=self.context).data
