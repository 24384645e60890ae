from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from accounts.models import ApiKey, Membership, Organization, SmtpCredential


class MembershipFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        """An organization keeps at least one owner (as the dashboard's member rules say): without one, nobody
        can manage its members, keys or domains."""
        super().clean()
        kept = [form.cleaned_data for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        if not any(data.get("role") == Membership.Role.OWNER for data in kept):
            raise ValidationError("An organization needs at least one owner: add a member with the role owner.")


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 1  # a new organization's first member, to be its owner
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["organization"]
    search_fields = ["name", "prefix", "organization__name"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]


@admin.register(SmtpCredential)
class SmtpCredentialAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "username", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["organization"]
    search_fields = ["name", "username", "organization__name"]
    readonly_fields = ["username", "password_hash", "created_at", "last_used_at"]
    filter_horizontal = ["allowed_domains"]
