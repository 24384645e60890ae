from django.urls import path

from .views import auth, domains, members, messages, operators, overview, secrets, suppressions, webhooks

app_name = "dashboard"

org = "o/<int:org_id>/"

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.login, name="login"),
    path("logout/", auth.logout, name="logout"),
    path("account/password/", auth.password_change, name="password_change"),
    path(org, overview.overview, name="overview"),
    path(f"{org}domains/", domains.domains, name="domains"),
    path(f"{org}domains/add", domains.domain_add, name="domain_add"),
    path(f"{org}domains/<int:domain_id>/", domains.domain_detail, name="domain"),
    path(f"{org}domains/<int:domain_id>/check", domains.domain_check, name="domain_check"),
    path(f"{org}domains/<int:domain_id>/rotate-dkim", domains.domain_rotate, name="domain_rotate"),
    path(f"{org}domains/<int:domain_id>/delete", domains.domain_remove, name="domain_delete"),
    path(f"{org}messages/", messages.messages_list, name="messages"),
    path(f"{org}messages/<uuid:message_id>/", messages.message_detail, name="message"),
    path(f"{org}messages/<uuid:message_id>/source", messages.message_source, name="message_source"),
    path(f"{org}messages/<uuid:message_id>/html", messages.message_html, name="message_html"),
    path(f"{org}suppressions/", suppressions.suppressions, name="suppressions"),
    path(f"{org}suppressions/add", suppressions.suppression_create, name="suppression_add"),
    path(f"{org}suppressions/remove", suppressions.suppression_lift, name="suppression_remove"),
    path(f"{org}suppressions/export", suppressions.suppressions_export, name="suppressions_export"),
    path(f"{org}suppressions/import", suppressions.suppressions_upload, name="suppressions_import"),
    path(f"{org}keys/", secrets.keys, name="keys"),
    path(f"{org}keys/api", secrets.api_key_new, name="api_key_create"),
    path(f"{org}keys/api/<int:key_id>/revoke", secrets.api_key_cancel, name="api_key_revoke"),
    path(f"{org}keys/smtp", secrets.smtp_credential_new, name="smtp_credential_create"),
    path(f"{org}keys/smtp/<int:credential_id>/revoke", secrets.smtp_credential_cancel, name="smtp_credential_revoke"),
    path(f"{org}webhooks/", webhooks.webhooks, name="webhooks"),
    path(f"{org}webhooks/add", webhooks.webhook_new, name="webhook_add"),
    path(f"{org}webhooks/<uuid:endpoint_id>/", webhooks.webhook_detail, name="webhook"),
    path(f"{org}webhooks/<uuid:endpoint_id>/rotate-secret", webhooks.webhook_rotate, name="webhook_rotate"),
    path(f"{org}webhooks/<uuid:endpoint_id>/enabled", webhooks.webhook_enabled, name="webhook_enabled"),
    path(f"{org}webhooks/<uuid:endpoint_id>/delete", webhooks.webhook_remove, name="webhook_delete"),
    path(f"{org}webhooks/<uuid:endpoint_id>/test", webhooks.webhook_test, name="webhook_test"),
    path(
        f"{org}webhooks/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/replay",
        webhooks.webhook_replay,
        name="webhook_replay",
    ),
    path(f"{org}members/", members.members, name="members"),
    path(f"{org}members/add", members.member_add, name="member_add"),
    path(f"{org}members/<int:member_id>/role", members.member_role, name="member_role"),
    path(f"{org}members/<int:member_id>/remove", members.member_remove, name="member_remove"),
    path("ops/queue/", operators.queue, name="queue"),
]
