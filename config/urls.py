from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from dashboard.views import sso
from sending.inbound.links import file_view
from sending.operations import metrics_view, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    # The SES v2-compatible API at SES's own paths (sending.compat.ses): boto3's sesv2 with endpoint_url=Postwerk.
    path("v2/email/", include("sending.compat.ses.urls")),
    # Postmark's API at Postmark's own paths (sending.compat.postmark): a Postmark client needs only a new base URL.
    path("", include("sending.compat.postmark.urls")),
    # Open pixels, click redirects and one-click unsubscribe (sending.feedback.tracking), linked from tracked mail.
    path("t/", include("sending.feedback.tracking_urls")),
    # Signed, expiring links an inbound post gives to its raw message and large attachments (sending.inbound.links).
    path("inbound-files/<str:token>", file_view, name="inbound-file"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # Optional OpenID Connect sign-in (404 unless configured); mozilla-django-oidc reverses these two names.
    path("oidc/authenticate/", sso.sso_start, name="oidc_authentication_init"),
    path("oidc/callback/", sso.sso_callback, name="oidc_authentication_callback"),
    path("", include("dashboard.urls")),
]
