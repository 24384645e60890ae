from django.contrib import admin

from .models import ApiKey, Membership, Organization, SmtpCredential


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
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
