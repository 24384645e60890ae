"""The accounts API's routes (SMTP credentials, API keys, the audit log), under /api/v1/."""

from django.urls import path

from sending.api import api_keys
from sending.api import smtp_credentials as accounts_api

urlpatterns = [
    path("smtp-credentials", accounts_api.SmtpCredentialsView.as_view(), name="smtp-credentials"),
    path(
        "smtp-credentials/<int:credential_id>",
        accounts_api.SmtpCredentialDetailView.as_view(),
        name="smtp-credential-detail",
    ),
]

urlpatterns += [
    path("api-keys", api_keys.ApiKeysView.as_view(), name="api-keys"),
    path("api-keys/<int:key_id>", api_keys.ApiKeyDetailView.as_view(), name="api-key-detail"),
    path("api-keys/<int:key_id>/rotate", api_keys.ApiKeyRotateView.as_view(), name="api-key-rotate"),
    path(
        "api-keys/<int:key_id>/ses-access-key",
        api_keys.ApiKeySesAccessKeyView.as_view(),
        name="api-key-ses-access-key",
    ),
    path("audit-log", api_keys.AuditLogView.as_view(), name="audit-log"),
]
