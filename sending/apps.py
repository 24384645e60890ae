from django.apps import AppConfig


class SendingConfig(AppConfig):
    name = "sending"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from sending.domains.platform_names import check_platform_names

        checks.register(check_platform_names, "postwerk")
