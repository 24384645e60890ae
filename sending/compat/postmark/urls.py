"""Postmark's paths, at the root of Postwerk's web server (config/urls.py) as at api.postmarkapp.com, so a client's
base URL is Postwerk's. Clients write some with a trailing slash (postmarker's `/email/withTemplate/`,
`/email/batchWithTemplates/` and `/bounces/`; anymail's `email/withTemplate/`): both spellings are served."""

from __future__ import annotations

from django.urls import re_path

from sending.compat.postmark import reads, views

urlpatterns = [
    re_path(r"^email/?$", views.EmailView.as_view(), name="postmark-email"),
    re_path(r"^email/batch/?$", views.EmailBatchView.as_view(), name="postmark-email-batch"),
    re_path(r"^email/withTemplate/?$", views.EmailWithTemplateView.as_view(), name="postmark-email-template"),
    re_path(
        r"^email/batchWithTemplates/?$",
        views.EmailBatchWithTemplatesView.as_view(),
        name="postmark-email-batch-templates",
    ),
    re_path(
        r"^messages/outbound/(?P<message_id>[^/]+)/details/?$",
        reads.OutboundMessageDetailsView.as_view(),
        name="postmark-message-details",
    ),
    re_path(r"^bounces/?$", reads.BouncesView.as_view(), name="postmark-bounces"),
    re_path(r"^bounces/(?P<bounce_id>[0-9]{1,18})/?$", reads.BounceView.as_view(), name="postmark-bounce"),
    re_path(
        r"^message-streams/(?P<stream>[^/]+)/suppressions/dump/?$",
        reads.SuppressionsDumpView.as_view(),
        name="postmark-suppressions-dump",
    ),
]
