from django.contrib import admin

from .models import DkimKey, Domain, Event, IdempotencyKey, Message, Recipient


class DkimKeyInline(admin.TabularInline):
    model = DkimKey
    extra = 0
    fields = ["selector", "algorithm", "active", "created_at"]
    readonly_fields = ["selector", "algorithm", "created_at"]


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "allow_subdomains", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name", "organization__name"]
    inlines = [DkimKeyInline]


class RecipientInline(admin.TabularInline):
    model = Recipient
    extra = 0
    fields = [
        "address",
        "kind",
        "state",
        "attempts",
        "last_code",
        "last_enhanced",
        "last_text",
        "mx_host",
        "tls",
    ]
    readonly_fields = fields
    can_delete = False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["message_id", "organization", "mail_from", "subject", "size", "created_at"]
    list_filter = ["organization"]
    search_fields = ["message_id", "mail_from", "subject", "recipients__address"]
    date_hierarchy = "created_at"
    exclude = ["raw"]
    readonly_fields = [
        "organization",
        "domain",
        "api_key",
        "message_id",
        "mail_from",
        "subject",
        "size",
        "smtputf8",
        "tags",
        "metadata",
        "created_at",
    ]
    inlines = [RecipientInline]


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ["address", "state", "attempts", "last_code", "mx_host", "next_attempt_at", "updated_at"]
    list_filter = ["state", "organization"]
    search_fields = ["address", "message__message_id"]
    raw_id_fields = ["message"]
    readonly_fields = ["claim_token"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["type", "organization", "recipient", "created_at"]
    list_filter = ["type", "organization"]
    raw_id_fields = ["message", "recipient"]


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ["key", "organization", "status_code", "created_at"]
    list_filter = ["organization"]
