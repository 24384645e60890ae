"""Forms: parse and validate what a member typed; the views hand the cleaned values to one service."""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth.forms import UserCreationForm

from accounts.models import ApiKey, Membership, Organization, SmtpCredential
from accounts.scopes import Scope
from mail.addresses import AddressError, parse_mailbox
from sending.domains.service import DomainError, normalize_domain
from sending.models import DkimKey, Domain, EventType, RecipientState, Suppression, TemplateKind, WebhookDelivery

MAX_IMPORT_BYTES = 10 * 1024 * 1024


class DomainAddForm(forms.Form):
    name = forms.CharField(max_length=253, label="Domain name", help_text="The domain in your From addresses.")
    dkim_ed25519 = forms.BooleanField(
        required=False, label="Also sign with Ed25519", help_text="A second DKIM signature (RFC 8463)."
    )
    allow_subdomains = forms.BooleanField(required=False, label="Allow From addresses at subdomains")
    return_path_subdomain = forms.CharField(
        max_length=63, required=False, label="Return-path subdomain", help_text="Leave empty for the default."
    )

    def clean_name(self) -> str:
        try:
            return normalize_domain(self.cleaned_data["name"])
        except DomainError as exc:
            raise forms.ValidationError(str(exc)) from exc


class DomainTestMessageForm(forms.Form):
    local_part = forms.CharField(
        max_length=64, initial="test", label="From (before the @)", help_text="Sent from this name at the domain."
    )
    to = forms.CharField(max_length=320, label="Send to", help_text="An address whose inbox you can read.")

    def clean_local_part(self) -> str:
        value = self.cleaned_data["local_part"].strip()
        try:
            parse_mailbox(f"{value}@example.com")
        except AddressError as exc:
            raise forms.ValidationError("Not a valid name before the @.") from exc
        return value

    def clean_to(self):  # type: ignore[no-untyped-def]
        try:
            return parse_mailbox(self.cleaned_data["to"])
        except AddressError as exc:
            raise forms.ValidationError(str(exc)) from exc


class RotateDkimForm(forms.Form):
    algorithm = forms.ChoiceField(
        choices=[(DkimKey.Algorithm.RSA, "RSA-2048"), (DkimKey.Algorithm.ED25519, "Ed25519")],
        initial=DkimKey.Algorithm.RSA,
    )


class MessageSearchForm(forms.Form):
    recipient = forms.CharField(required=False, max_length=320, label="Recipient")
    sender = forms.CharField(required=False, max_length=320, label="Sender")
    subject = forms.CharField(required=False, max_length=500, label="Subject")
    tag = forms.CharField(required=False, max_length=100, label="Tag")
    message_id = forms.CharField(required=False, max_length=998, label="Message id")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *RecipientState.choices])
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))


def _address(value: str) -> str:
    try:
        return parse_mailbox(value).envelope_address.lower()
    except AddressError as exc:
        raise forms.ValidationError(str(exc)) from exc


class SuppressionSearchForm(forms.Form):
    address = forms.CharField(required=False, max_length=320, label="Address contains")
    reason = forms.ChoiceField(required=False, choices=[("", "Any reason"), *Suppression.Reason.choices])
    include_removed = forms.BooleanField(required=False, label="Include lifted and expired entries")


class SuppressionAddForm(forms.Form):
    address = forms.CharField(max_length=320, label="Address")
    note = forms.CharField(max_length=1000, required=False, label="Note")

    def clean_address(self) -> str:
        return _address(self.cleaned_data["address"])


class SuppressionRemoveForm(forms.Form):
    address = forms.CharField(max_length=320)


class SuppressionImportForm(forms.Form):
    file = forms.FileField(
        required=False, label="CSV file", help_text="An address column and an optional reason column."
    )
    text = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), label="Or paste addresses, one per line"
    )

    def clean(self) -> dict:
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > MAX_IMPORT_BYTES:
                raise forms.ValidationError(f"The file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB.")
            data["csv"] = upload.read().decode("utf-8-sig", "replace")
        else:
            data["csv"] = data.get("text") or ""
        if not data["csv"].strip():
            raise forms.ValidationError("Choose a CSV file or paste addresses.")
        return data


class SenderLimitsForm(forms.Form):
    """The limits an API key and an SMTP credential share: sender domains of the organization and client networks."""

    domains_label = "Limit to sender domains"
    allowed_domains = forms.ModelMultipleChoiceField(
        queryset=Domain.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every domain of the organization.",
    )
    allowed_networks = forms.CharField(
        required=False,
        label="Limit to networks",
        help_text="CIDR networks separated by commas or spaces, e.g. 203.0.113.0/24. Empty: any address.",
    )

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        domains = self.fields["allowed_domains"]
        domains.label = self.domains_label
        domains.queryset = Domain.objects.filter(organization=organization).order_by("name")  # type: ignore[attr-defined]

    def clean_allowed_networks(self) -> list[str]:
        return [n for n in self.cleaned_data["allowed_networks"].replace(",", " ").split() if n]


class ApiKeyForm(SenderLimitsForm):
    field_order = ["name", "sandbox", "scopes", "allowed_domains", "allowed_networks", "expires_at", "ses_access_key"]
    name = forms.CharField(max_length=200, label="Key name", help_text="Where it is used, e.g. “billing-app”.")
    ses_access_key = forms.BooleanField(
        required=False,
        label="SES access key",
        help_text="Also issue an access key id and secret for the SES-compatible API (boto3, anymail's Amazon SES "
        "backend), acting as this key.",
    )
    sandbox = forms.BooleanField(
        required=False,
        label="Sandbox",
        help_text="Mail sent with it runs the whole path and is stored, but goes to the built-in capture instead of "
        "the recipients (see the README's sandbox test addresses).",
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.SEND],
        help_text="What the key may do; “full” is everything. Never more than your role allows.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Empty: never (UTC).",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if ApiKey.objects.filter(organization=self.organization, name=name).exists():
            raise forms.ValidationError("A key with this name exists.")
        return name


class SmtpCredentialForm(SenderLimitsForm):
    name = forms.CharField(max_length=200, label="Credential name")
    domains_label = "Limit to domains"
    field_order = ["name", "allowed_domains", "allowed_networks", "sandbox"]
    sandbox = forms.BooleanField(
        required=False,
        label="Sandbox credential",
        widget=forms.CheckboxInput(attrs={"id": "id_smtp_sandbox"}),
        help_text="Mail sent with it runs the whole path and is stored, but goes to the built-in capture instead of "
        "the recipients (see the README's sandbox test addresses).",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if SmtpCredential.objects.filter(organization=self.organization, name=name).exists():
            raise forms.ValidationError("A credential with this name exists.")
        return name


class MemberAddForm(forms.Form):
    identifier = forms.CharField(
        max_length=254,
        label="Username or email",
        help_text="An email address that has no account yet creates one with a password shown to you once.",
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.DEVELOPER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


# The event-type picker, grouped by what an event is about: the order a person looks for them in.
_ENGAGEMENT = {EventType.OPENED, EventType.CLICKED, EventType.UNSUBSCRIBED, EventType.COMPLAINED}
EVENT_TYPE_KINDS = [
    ("Delivery", lambda t: "." not in t and t not in _ENGAGEMENT),
    ("Engagement and feedback", lambda t: t in _ENGAGEMENT),
    ("Domains and DNS", lambda t: t.startswith("domain.")),
    ("Reputation, limits and blocklists", lambda t: t.split(".")[0] in ("reputation", "send_limit", "blocklist")),
    ("Platform", lambda t: t.split(".")[0] in ("webhook", "ip")),
]


def event_type_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """EventType's choices as (kind, choices) groups; a type no kind claims lands in the last one."""
    groups: list[tuple[str, list[tuple[str, str]]]] = [(label, []) for label, _ in EVENT_TYPE_KINDS]
    for value in EventType.values:
        index = next((i for i, (_, test) in enumerate(EVENT_TYPE_KINDS) if test(value)), len(groups) - 1)
        groups[index][1].append((value, value))
    return [(label, choices) for label, choices in groups if choices]


class GroupedCheckboxes(forms.CheckboxSelectMultiple):
    """Checkboxes in one small fieldset per group of choices, laid out in columns (dashboard.css .choice-groups)."""

    template_name = "dashboard/widgets/grouped_checkboxes.html"
    grouped = True


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        max_length=2000,
        label="Endpoint URL",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/postwerk"}),
        help_text="Postwerk POSTs each event here, signed with the endpoint's secret.",
    )
    event_types = forms.MultipleChoiceField(
        choices=event_type_groups,
        required=False,
        widget=GroupedCheckboxes,
        label="Event types",
        help_text="None ticked: every event type.",
    )
    description = forms.CharField(max_length=200, required=False, label="Description")
    payload_format = forms.ChoiceField(
        choices=[("postwerk", "Postwerk"), ("postmark", "Postmark (for receivers written for Postmark's webhooks)")],
        initial="postwerk",
        required=False,
        label="Payload format",
        help_text="Postmark: delivery, bounce, spam complaint, open, click and subscription events in Postmark's JSON.",
    )

    def clean_payload_format(self) -> str:
        return self.cleaned_data.get("payload_format") or "postwerk"


class ActivityFilterForm(forms.Form):
    """The activity feed's filters; the domain choices are the organization's own."""

    type = forms.ChoiceField(
        required=False, choices=lambda: [("", "Any event"), *event_type_groups()], label="Event type"
    )
    domain = forms.ModelChoiceField(
        queryset=Domain.objects.none(), required=False, empty_label="Any domain", label="Sender domain"
    )
    tag = forms.CharField(required=False, max_length=100, label="Tag")
    recipient = forms.CharField(required=False, max_length=320, label="Recipient address")

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].queryset = Domain.objects.filter(organization=organization).order_by("name")


class WebhookDeliveryFilterForm(forms.Form):
    type = forms.ChoiceField(
        required=False, choices=lambda: [("", "Any event"), *event_type_groups()], label="Event type"
    )
    state = forms.ChoiceField(
        required=False, choices=[("", "Any state"), *WebhookDelivery.State.choices], label="Delivery state"
    )
    recipient = forms.CharField(required=False, max_length=320, label="Recipient address")

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Its own element ids: the endpoint's page also has the test-event form, whose field is `type` too.
        kwargs.setdefault("auto_id", "filter_%s")
        super().__init__(*args, **kwargs)


class WebhookTestForm(forms.Form):
    type = forms.ChoiceField(choices=event_type_groups, initial=EventType.DELIVERED, label="Event type")


class WebhookEnabledForm(forms.Form):
    enabled = forms.TypedChoiceField(choices=[("1", "enable"), ("0", "disable")], coerce=lambda v: v == "1")


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Email address", help_text="They get a link that works for 7 days.")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.DEVELOPER, label="Role")

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Its own element ids: the Members page also shows the add-member form, which has a role field too.
        kwargs.setdefault("auto_id", "invite_%s")
        super().__init__(*args, **kwargs)


class InvitationSignupForm(UserCreationForm):
    """A new account for the invited address: the username is the person's choice, the email the invited one."""

    class Meta(UserCreationForm.Meta):
        fields = ("username",)


class OrganizationLimitsForm(forms.Form):
    hourly_limit = forms.IntegerField(
        min_value=0, required=False, label="Messages per hour", help_text="Empty: the platform default; 0: none."
    )
    daily_limit = forms.IntegerField(
        min_value=0, required=False, label="Messages per day", help_text="Empty: the platform default; 0: none."
    )
    limit_action = forms.ChoiceField(
        choices=[("", "Platform default"), *Organization.LimitAction.choices],
        required=False,
        label="Over a limit or paused",
        help_text="Hold: accept and keep the mail until released. Reject: refuse it (API 429, SMTP 451).",
    )


class ReputationActionForm(forms.Form):
    reason = forms.CharField(max_length=1000, label="Reason", help_text="Kept in the history and sent with the event.")


class ReputationThresholdsForm(forms.Form):
    """A key's or credential's own thresholds, typed as percentages; empty means the platform's. Only parsed
    here: what may be set (stricter only, warning below pause) is sending.reputation.rates's to decide."""

    FIELDS = {
        "bounce_warning": "Bounce warning",
        "bounce_pause": "Bounce pause",
        "complaint_warning": "Complaint warning",
        "complaint_pause": "Complaint pause",
    }

    def __init__(self, *args: object, platform: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for name, label in self.FIELDS.items():
            rate = getattr(platform, name)
            self.fields[name] = forms.DecimalField(
                required=False,
                label=f"{label} (%)",
                widget=forms.NumberInput(attrs={"step": "any", "min": "0", "placeholder": f"{rate * 100:g}"}),
                help_text=f"Platform: {rate * 100:g} % ({rate:g}).",
            )

    def rates(self) -> dict[str, float | None]:
        """The cleaned percentages as rates (Decimal arithmetic: 0.1 % is exactly the float 0.001)."""
        return {
            name: None if self.cleaned_data.get(name) is None else float(self.cleaned_data[name] / 100)
            for name in self.FIELDS
        }

    @staticmethod
    def initial_for(reputation: object) -> dict[str, str]:
        return {
            name: f"{getattr(reputation, name) * 100:g}"
            for name in ReputationThresholdsForm.FIELDS
            if getattr(reputation, name) is not None
        }


class LoginUnlockForm(forms.Form):
    username = forms.CharField(required=False, max_length=150, label="Username")
    ip = forms.GenericIPAddressField(
        required=False, label="IP address", help_text="IPv6 addresses count per /64, as the log-in limits do."
    )

    def clean(self) -> dict:
        data = super().clean() or {}
        if not (data.get("username") or "").strip() and not data.get("ip"):
            raise forms.ValidationError("Give a username, an IP address, or both.")
        return data


class HeldFilterForm(forms.Form):
    """Which held recipients a page shows and a release or cancel acts on; choices are the organization's own."""

    address = forms.CharField(required=False, max_length=320, label="Recipient contains")
    domain = forms.ModelChoiceField(
        queryset=Domain.objects.none(), required=False, empty_label="Any domain", label="Sender domain"
    )
    held_reason = forms.ChoiceField(
        required=False,
        label="Why held",
        choices=[("", "Any reason"), ("reputation_paused", "Reputation paused"), ("send_limit", "Send limit")],
    )
    api_key = forms.ModelChoiceField(
        queryset=ApiKey.objects.none(), required=False, empty_label="Any API key", label="API key"
    )
    smtp_credential = forms.ModelChoiceField(
        queryset=SmtpCredential.objects.none(),
        required=False,
        empty_label="Any SMTP credential",
        label="SMTP credential",
    )
    tag = forms.CharField(required=False, max_length=100, label="Tag")
    held_after = forms.DateField(required=False, label="Held from", widget=forms.DateInput(attrs={"type": "date"}))
    held_before = forms.DateField(required=False, label="Held until", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].queryset = Domain.objects.filter(organization=organization).order_by("name")
        self.fields["api_key"].queryset = ApiKey.objects.filter(organization=organization).order_by("name")
        self.fields["smtp_credential"].queryset = SmtpCredential.objects.filter(organization=organization).order_by(
            "name"
        )


class HeldActionForm(forms.Form):
    # Absent: a dry run that only counts; the confirmation page posts it.
    confirm = forms.BooleanField(required=False)


class StreamAddForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="Lower-case letters, digits, '-' or '_': what `stream` names.")
    description = forms.CharField(max_length=200, required=False)


class TemplateForm(forms.Form):
    """A template's fields as the editor shows them; `test_model` is only for the preview, never stored."""

    alias = forms.CharField(max_length=100, required=False, help_text="How the API names it (besides its id).")
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=TemplateKind.choices, initial=TemplateKind.STANDARD)
    subject = forms.CharField(required=False, max_length=2000, strip=False)
    html = forms.CharField(
        required=False, strip=False, label="HTML", widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"})
    )
    text = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="Leave empty to have it made from the HTML.",
    )
    layout = forms.ChoiceField(required=False, choices=[("", "No layout")])
    strict = forms.BooleanField(required=False, label="Strict: refuse a model that lacks a variable")
    test_model = forms.CharField(
        required=False,
        label="Test model (JSON)",
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="The variables the preview renders with.",
    )

    def __init__(self, *args, layouts=(), editing: bool = False, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.fields["layout"].choices = [("", "No layout")] + [(str(t.pk), str(t)) for t in layouts]
        if editing:
            self.fields["kind"].disabled = True

    def clean_test_model(self) -> dict:
        raw = self.cleaned_data.get("test_model") or "{}"
        try:
            model = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from exc
        if not isinstance(model, dict):
            raise forms.ValidationError('A JSON object, such as {"name": "Jane"}.')
        return model

    def template_values(self) -> dict:
        data = self.cleaned_data
        return {
            "alias": data["alias"] or None,
            "name": data["name"],
            "subject": data["subject"],
            "html": data["html"],
            "text": data["text"],
            "layout": int(data["layout"]) if data["layout"] else None,
            "strict": data["strict"],
        }
