from django.apps import AppConfig


class SendingConfig(AppConfig):
    name = "sending"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from sending.domains.platform_names import check_platform_names

        checks.register(check_platform_names, "postwerk")

        # Every organization has its `transactional` stream from the start (accounts knows nothing of streams).
        from django.db.models.signals import post_save

        from accounts.models import Organization
        from sending.streams.service import organization_created

        post_save.connect(organization_created, sender=Organization, dispatch_uid="sending.transactional_stream")
