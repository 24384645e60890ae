from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib import admin

        from dashboard.login_limits import guard_login_view

        # The admin has its own log-in form: without this, it would be the unguarded way to guess passwords.
        admin.site.login = guard_login_view(admin.site.login)  # type: ignore[method-assign]
