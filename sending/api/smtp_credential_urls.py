"""The accounts API's routes (SMTP credentials), under /api/v1/."""

from django.urls import path

from sending.api import smtp_credentials as accounts_api

urlpatterns = [
    path("smtp-credentials", accounts_api.SmtpCredentialsView.as_view(), name="smtp-credentials"),
    path(
        "smtp-credentials/<int:credential_id>",
        accounts_api.SmtpCredentialDetailView.as_view(),
        name="smtp-credential-detail",
    ),
]
