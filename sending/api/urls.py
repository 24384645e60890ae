from django.urls import path

from accounts import api as accounts_api

from . import domains, suppressions, views

urlpatterns = [
    path("messages", views.MessagesView.as_view(), name="messages"),
    path("messages/batch", views.MessageBatchView.as_view(), name="messages-batch"),
    path("messages/<uuid:message_id>", views.MessageDetailView.as_view(), name="message-detail"),
    path("domains", domains.DomainsView.as_view(), name="domains"),
    path("domains/<int:domain_id>", domains.DomainDetailView.as_view(), name="domain-detail"),
    path("domains/<int:domain_id>/verify", domains.DomainVerifyView.as_view(), name="domain-verify"),
    path("domains/<int:domain_id>/rotate-dkim", domains.DomainRotateDkimView.as_view(), name="domain-rotate-dkim"),
    path("suppressions", suppressions.SuppressionsView.as_view(), name="suppressions"),
    path("suppressions/export", suppressions.SuppressionExportView.as_view(), name="suppressions-export"),
    path("suppressions/import", suppressions.SuppressionImportView.as_view(), name="suppressions-import"),
    path("suppressions/<str:address>", suppressions.SuppressionDetailView.as_view(), name="suppression-detail"),
    path("smtp-credentials", accounts_api.SmtpCredentialsView.as_view(), name="smtp-credentials"),
    path(
        "smtp-credentials/<int:credential_id>",
        accounts_api.SmtpCredentialDetailView.as_view(),
        name="smtp-credential-detail",
    ),
]
