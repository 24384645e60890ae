"""The sending API's routes, under /api/v1/ (config/api_urls.py puts every app's API together)."""

from django.urls import path

from sending.api import (
    dmarc_reports,
    domains,
    events,
    feedback_reports,
    inbound,
    inbound_routes,
    stats,
    streams,
    suppressions,
    templates,
    tracking,
    views,
    webhooks,
)
from sending.api import held as held_api
from sending.api import ips as ips_api
from sending.api import reputation as reputation_api

urlpatterns = [
    path("reputation", reputation_api.ReputationView.as_view(), name="reputation"),
    path(
        "reputation/<int:reputation_id>/resume", reputation_api.ReputationResumeView.as_view(), name="reputation-resume"
    ),
    path(
        "reputation/<int:reputation_id>/thresholds",
        reputation_api.ReputationThresholdsView.as_view(),
        name="reputation-thresholds",
    ),
    path("feedback/reports", feedback_reports.FeedbackReportsView.as_view(), name="feedback-reports"),
    path("inbound", inbound.InboundView.as_view(), name="inbound"),
    path("inbound/<uuid:inbound_id>", inbound.InboundDetailView.as_view(), name="inbound-detail"),
    path("inbound/<uuid:inbound_id>/raw", inbound.InboundRawView.as_view(), name="inbound-raw"),
    path("inbound/<uuid:inbound_id>/retry", inbound.InboundRetryView.as_view(), name="inbound-retry"),
    path("inbound/<uuid:inbound_id>/release", inbound.InboundReleaseView.as_view(), name="inbound-release"),
    path("inbound-routes", inbound_routes.InboundRoutesView.as_view(), name="inbound-routes"),
    path("inbound-routes/<uuid:route_id>", inbound_routes.InboundRouteDetailView.as_view(), name="inbound-route"),
    path("ips", ips_api.IpsView.as_view(), name="ips"),
    path("held", held_api.HeldView.as_view(), name="held"),
    path("held/release", held_api.HeldReleaseView.as_view(), name="held-release"),
    path("held/cancel", held_api.HeldCancelView.as_view(), name="held-cancel"),
    path("messages", views.MessagesView.as_view(), name="messages"),
    path("messages/batch", views.MessageBatchView.as_view(), name="messages-batch"),
    path("messages/<uuid:message_id>", views.MessageDetailView.as_view(), name="message-detail"),
    path("messages/<uuid:message_id>/cancel", views.MessageCancelView.as_view(), name="message-cancel"),
    path("streams", streams.StreamsView.as_view(), name="streams"),
    path("streams/<int:stream_id>", streams.StreamDetailView.as_view(), name="stream-detail"),
    path("templates", templates.TemplatesView.as_view(), name="templates"),
    path("templates/validate", templates.TemplateValidateView.as_view(), name="templates-validate"),
    path("templates/<str:ref>", templates.TemplateDetailView.as_view(), name="template-detail"),
    path("templates/<str:ref>/versions", templates.TemplateVersionsView.as_view(), name="template-versions"),
    path(
        "templates/<str:ref>/versions/<int:number>/restore",
        templates.TemplateRestoreView.as_view(),
        name="template-restore",
    ),
    path("domains", domains.DomainsView.as_view(), name="domains"),
    path("domains/<int:domain_id>", domains.DomainDetailView.as_view(), name="domain-detail"),
    path("domains/<int:domain_id>/verify", domains.DomainVerifyView.as_view(), name="domain-verify"),
    path("domains/<int:domain_id>/inbound", inbound_routes.DomainInboundView.as_view(), name="domain-inbound"),
    path("domains/<int:domain_id>/rotate-dkim", domains.DomainRotateDkimView.as_view(), name="domain-rotate-dkim"),
    path("suppressions", suppressions.SuppressionsView.as_view(), name="suppressions"),
    path("suppressions/export", suppressions.SuppressionExportView.as_view(), name="suppressions-export"),
    path("suppressions/import", suppressions.SuppressionImportView.as_view(), name="suppressions-import"),
    path("suppressions/<str:address>", suppressions.SuppressionDetailView.as_view(), name="suppression-detail"),
    path("events", events.EventsView.as_view(), name="events"),
    path("stats", stats.StatsView.as_view(), name="stats"),
    path("events/<int:event_id>", events.EventDetailView.as_view(), name="event-detail"),
    path("webhooks", webhooks.WebhooksView.as_view(), name="webhooks"),
    path("webhooks/<uuid:endpoint_id>", webhooks.WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<uuid:endpoint_id>/rotate-secret",
        webhooks.WebhookRotateSecretView.as_view(),
        name="webhook-rotate-secret",
    ),
    path("webhooks/<uuid:endpoint_id>/test", webhooks.WebhookTestView.as_view(), name="webhook-test"),
    path("webhooks/<uuid:endpoint_id>/deliveries", webhooks.WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>",
        webhooks.WebhookDeliveryDetailView.as_view(),
        name="webhook-delivery-detail",
    ),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/replay",
        webhooks.WebhookDeliveryReplayView.as_view(),
        name="webhook-delivery-replay",
    ),
    path(
        "domains/<int:domain_id>/dmarc-reports",
        dmarc_reports.DomainDmarcReportsView.as_view(),
        name="domain-dmarc-reports",
    ),
    path("domains/<int:domain_id>/tracking", tracking.DomainTrackingView.as_view(), name="domain-tracking"),
]
