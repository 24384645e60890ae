"""Settings of the application under test: only what anymail needs. The Postwerk URL, the token and the webhook
credentials come from the environment the test sets."""

import os

SECRET_KEY = "anymail-app"  # noqa: S105 - a test application's own
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = ["anymail"]
ROOT_URLCONF = "tests.servers.anymail_app.urls"
DATABASES = {}
USE_TZ = True
EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
# Exactly the settings the README's "Moving from Postmark" tells an application to change.
ANYMAIL = {
    "POSTMARK_SERVER_TOKEN": os.environ.get("POSTWERK_API_KEY", ""),
    "POSTMARK_API_URL": os.environ.get("POSTWERK_URL", ""),
    "WEBHOOK_SECRET": os.environ.get("ANYMAIL_WEBHOOK_SECRET", ""),
}
