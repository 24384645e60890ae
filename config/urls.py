from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from dashboard.views import sso
from sending.operations import metrics_view, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    # The SES v2-compatible API at SES's own paths (sending.compat.ses): boto3's sesv2 with endpoint_url=Postwerk.
    path("v2/email/", include("sending.compat.ses.urls")),
    # Open pixels, click redirects and one-click unsubscribe (sending.feedback.tracking), linked from tracked mail.
    path("t/", include("sending.feedback.tracking_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    # Optional OpenID Connect sign-in (404 unless configured); mozilla-django-oidc reverses these two names.
    path("oidc/authenticate/", sso.sso_start, name="oidc_authentication_init"),
    path("oidc/callback/", sso.sso_callback, name="oidc_authentication_callback"),
    path("", include("dashboard.urls")),
]
