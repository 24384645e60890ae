"""The entry points: `/` sends a member to their organization, login and logout, password change, errors."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy

from accounts.first_run import sign_in_link_peek, sign_in_link_use
from accounts.models import Membership
from dashboard import login_limits
from dashboard.access import ORG_SESSION_KEY
from dashboard.security import apply_headers, security_headers
from dashboard.views.common import page


@security_headers
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("dashboard:login")
    memberships = list(Membership.objects.filter(user=request.user).order_by("organization__name"))
    remembered = request.session.get(ORG_SESSION_KEY)
    chosen = next((m for m in memberships if m.organization_id == remembered), None) or next(iter(memberships), None)
    if chosen is not None:
        return redirect("dashboard:overview", org_id=chosen.organization_id)
    if request.user.is_staff:
        # An operator (createsuperuser) who belongs to no organization: say how to get one, not just the queue.
        messages.info(
            request,
            "You are an operator but not a member of any organization, so there is no organization dashboard to "
            "show. Run `manage.py provision --org NAME --owner YOUR-EMAIL` (or add yourself as an owner in the "
            "admin, Organizations → members).",
        )
        return redirect("dashboard:queue")
    return page(request, "dashboard/no_organization.html")


class RateLimitedLoginView(auth_views.LoginView):
    """Django's log-in, refused with 429 while the username or the client address is locked out
    (see login_limits): the password is not checked then, right or wrong."""

    template_name = "dashboard/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):  # type: ignore[no-untyped-def]
        context = super().get_context_data(**kwargs)
        context["sso_enabled"] = settings.POSTWERK_OIDC_ENABLED
        context["sso_failed"] = self.request.GET.get("sso") == "failed"
        return context

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        ip, username = login_limits.client_ip(request), request.POST.get("username", "")
        wait = login_limits.locked_for(ip, username)
        if wait:
            minutes = max(1, -(-wait // 60))
            lockout = (
                "Too many failed log-in attempts for this account or from your network. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
            )
            # An unbound form: validating the posted one would check the password.
            form = self.get_form_class()(request, initial={"username": username[:150]})
            response = self.render_to_response(self.get_context_data(form=form, lockout=lockout), status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):  # type: ignore[no-untyped-def]
        login_limits.record_failure(login_limits.client_ip(self.request), self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        login_limits.record_success(self.request.POST.get("username", ""))
        return super().form_valid(form)


login = security_headers(RateLimitedLoginView.as_view())
logout = security_headers(auth_views.LogoutView.as_view())


class PasswordSetOrChangeView(auth_views.PasswordChangeView):
    """Changing a password asks for the old one; a person who came in by a one-time sign-in link has none yet
    and just sets one."""

    def get_form_class(self):  # type: ignore[no-untyped-def]
        return PasswordChangeForm if self.request.user.has_usable_password() else SetPasswordForm


password_change = security_headers(
    PasswordSetOrChangeView.as_view(
        template_name="dashboard/password_change.html", success_url=reverse_lazy("dashboard:home")
    )
)


@security_headers
def sign_in_link(request: HttpRequest, token: str) -> HttpResponse:
    """A one-time sign-in link (manage.py provision --owner). GET only shows a button: link scanners and
    previews follow links, and must not use up a link meant for a person. POST uses it and signs in."""
    if request.method == "POST":
        link = sign_in_link_use(token)
        if link is not None:
            auth_login(request, link.user, backend="django.contrib.auth.backends.ModelBackend")
            if not link.user.has_usable_password():
                messages.info(request, "Welcome! Set a password (Account → Password) to sign in again later.")
            if link.organization_id:
                request.session[ORG_SESSION_KEY] = link.organization_id
                return redirect("dashboard:overview", org_id=link.organization_id)
            return redirect("dashboard:home")
    elif request.method == "GET":
        link = sign_in_link_peek(token)
        if link is not None:
            return page(request, "dashboard/sign_in_link.html", {"link": link})
    else:
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    return page(request, "dashboard/sign_in_link.html", {"link": None}, status=404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Shown instead of Django's technical page when a form's CSRF token is missing or stale."""
    return apply_headers(render(request, "dashboard/csrf_failure.html", {"reason": reason}, status=403))
