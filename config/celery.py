"""The Celery application: the distributed engine behind delivery and every periodic job."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("postwerk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
