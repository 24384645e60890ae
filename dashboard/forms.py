"""Forms: parse and validate what a member typed; the views hand the cleaned values to one service."""

from __future__ import annotations

from django import forms

from accounts.models import ApiKey, Membership, Organization, SmtpCredential
from sending.addresses import AddressError, parse_mailbox
from sending.domains import DomainError, normalize_domain
from sending.models import DkimKey, Domain, EventType, RecipientState, Suppression

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


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=200, label="Key name", help_text="Where it is used, e.g. “billing-app”.")

    def __init__(self, *args: object, organization: Organization, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if ApiKey.objects.filter(organization=self.organization, name=name).exists():
            raise forms.ValidationError("A key with this name exists.")
        return name


class SmtpCredentialForm(forms.Form):
    name = forms.CharField(max_length=200, label="Credential name")
    allowed_domains = forms.ModelMultipleChoiceField(
        queryset=Domain.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Limit to domains",
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
        self.fields["allowed_domains"].queryset = Domain.objects.filter(organization=organization).order_by("name")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if SmtpCredential.objects.filter(organization=self.organization, name=name).exists():
            raise forms.ValidationError("A credential with this name exists.")
        return name

    def clean_allowed_networks(self) -> list[str]:
        return [n for n in self.cleaned_data["allowed_networks"].replace(",", " ").split() if n]


class MemberAddForm(forms.Form):
    identifier = forms.CharField(
        max_length=254,
        label="Username or email",
        help_text="An email address that has no account yet creates one with a password shown to you once.",
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.DEVELOPER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        max_length=2000,
        label="Endpoint URL",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/postwerk"}),
        help_text="Postwerk POSTs each event here, signed with the endpoint's secret.",
    )
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Event types",
        help_text="None ticked: every event type.",
    )
    description = forms.CharField(max_length=200, required=False, label="Description")


class WebhookTestForm(forms.Form):
    type = forms.ChoiceField(choices=EventType.choices, initial=EventType.DELIVERED, label="Event type")


class WebhookEnabledForm(forms.Form):
    enabled = forms.TypedChoiceField(choices=[("1", "enable"), ("0", "disable")], coerce=lambda v: v == "1")
