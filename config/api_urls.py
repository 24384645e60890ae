"""Every app's API under /api/v1/, and a JSON 404 for whatever else is there."""

from django.urls import include, path, re_path

from sending.api.errors import NotFoundView

urlpatterns = [
    path("", include("sending.api.urls")),
    path("", include("verification.urls")),
    path("", include("sending.api.smtp_credential_urls")),
    re_path(r"^.*$", NotFoundView.as_view()),  # last: whatever else is under /api/v1/
]
