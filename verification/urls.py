"""The verification API's routes, under /api/v1/."""

from django.urls import path

from verification import api as verification_api

urlpatterns = [
    path("verifications", verification_api.VerificationsView.as_view(), name="verifications"),
    path("verifications/<uuid:job_id>", verification_api.VerificationDetailView.as_view(), name="verification-detail"),
    path(
        "verifications/<uuid:job_id>/results.json",
        verification_api.VerificationResultsJsonView.as_view(),
        name="verification-results-json",
    ),
    path(
        "verifications/<uuid:job_id>/results.csv",
        verification_api.VerificationResultsCsvView.as_view(),
        name="verification-results-csv",
    ),
]
