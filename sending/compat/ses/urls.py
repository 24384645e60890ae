"""SES v2's paths (its service model's requestUri), under /v2/email/ as on email.<region>.amazonaws.com, so an SDK's
endpoint_url is simply Postwerk's base URL."""

from django.urls import path

from sending.compat.ses import views

urlpatterns = [
    path("outbound-emails", views.SendEmailView.as_view(), name="ses-send-email"),
    path("outbound-bulk-emails", views.SendBulkEmailView.as_view(), name="ses-send-bulk-email"),
    path("suppression/addresses", views.SuppressedDestinationsView.as_view(), name="ses-suppressed-destinations"),
    path(
        "suppression/addresses/<str:address>",
        views.SuppressedDestinationView.as_view(),
        name="ses-suppressed-destination",
    ),
]
