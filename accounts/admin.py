from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from accounts.audit import audit_record
from accounts.models import ApiKey, AuditEntry, Membership, Organization, SmtpCredential


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


def sole_ownerships(users: object) -> list[str]:
    """Why these users may not be deleted: each organization whose only owner is one of them. Deleting the user
    would delete that membership with it and leave the organization with nobody to manage it."""
    owned = Membership.objects.filter(user__in=users, role=Membership.Role.OWNER).select_related("organization", "user")
    refusals = []
    for membership in owned:
        others = Membership.objects.filter(organization=membership.organization_id, role=Membership.Role.OWNER)
        if not others.exclude(user__in=users).exists():
            refusals.append(
                f"{membership.user} is the only owner of the organization {membership.organization.name}: "
                "make another member its owner first"
            )
    return refusals


class PostwerkUserAdmin(UserAdmin):
    """Django's user admin, except that it will not delete an organization's last owner."""

    def get_deleted_objects(self, objs, request):  # type: ignore[no-untyped-def]
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Anything in `protected` makes the admin refuse the deletion and list the reasons.
        return deleted, counts, perms_needed, [*protected, *sole_ownerships(list(objs))]


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), PostwerkUserAdmin)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def save_formset(self, request, form, formset, change):  # type: ignore[no-untyped-def]
        """Memberships changed here are changes by a person too: into the organization's audit log (the
        operator and their address come from the request, accounts.audit)."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        before = {m.pk: m.role for m in Membership.objects.filter(organization=form.instance)}
        super().save_formset(request, form, formset, change)
        for membership in formset.new_objects:
            audit_record(
                organization=form.instance,
                action="member.added",
                target=membership,
                target_label=membership.user.get_username(),
                changes={"role": membership.role},
            )
        for membership, _ in formset.changed_objects:
            if before.get(membership.pk) != membership.role:
                audit_record(
                    organization=form.instance,
                    action="member.role_changed",
                    target=membership,
                    target_label=membership.user.get_username(),
                    changes={"role": [before.get(membership.pk), membership.role]},
                )
        for membership in formset.deleted_objects:
            audit_record(
                organization=form.instance,
                action="member.removed",
                target_label=membership.user.get_username(),
                changes={"role": before.get(membership.pk, membership.role)},
            )


class AuditedAdmin(admin.ModelAdmin):
    """An operator's edits of an organization's secrets in the admin go to its audit log like any other change
    (the services record theirs; the admin saves the model directly). Who and from where: the actor middleware."""

    audit_name = ""  # the action's prefix: api_key, smtp_credential

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        # JSON fields show up in changed_data when only their spelling changed: keep the real changes.
        changes = {}
        for name in form.changed_data:
            before, after = _plain(form.initial.get(name)), _plain(form.cleaned_data.get(name))
            if before != after:
                changes[name] = [before, after]
        super().save_model(request, obj, form, change)
        verb = "changed_in_admin" if change else "created_in_admin"
        audit_record(organization=obj.organization_id, action=f"{self.audit_name}.{verb}", target=obj, changes=changes)

    def delete_model(self, request, obj):  # type: ignore[no-untyped-def]
        audit_record(
            organization=obj.organization_id,
            action=f"{self.audit_name}.deleted_in_admin",
            target=obj,
            target_label=str(obj),
        )
        super().delete_model(request, obj)


def _plain(value: object) -> object:
    """A form value as JSON can keep it (model instances and querysets by their string)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    audit_name = "api_key"
    list_display = [
        "name",
        "organization",
        "prefix",
        "scopes",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["organization"]
    search_fields = ["name", "prefix", "organization__name"]
    readonly_fields = [
        "prefix",
        "key_hash",
        "previous_key_hash",
        "previous_valid_until",
        "rotated_at",
        "created_by",
        "member_bound",
        "created_at",
        "last_used_at",
        "ses_access_key_id",  # issued with its secret (ses_access_key_issue), never typed in
    ]
    # The encrypted SES secret is no operator's to read or change.
    exclude = ["ses_secret_encrypted"]


@admin.register(SmtpCredential)
class SmtpCredentialAdmin(AuditedAdmin):
    audit_name = "smtp_credential"

    list_display = ["name", "organization", "username", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["organization"]
    search_fields = ["name", "username", "organization__name"]
    readonly_fields = ["username", "password_hash", "created_at", "last_used_at"]
    filter_horizontal = ["allowed_domains"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the log is written by the services, never edited."""

    list_display = ["created_at", "organization", "actor", "ip", "action", "target"]
    list_filter = ["action", "actor_type", "organization"]
    search_fields = ["actor", "target", "action", "organization__name"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
