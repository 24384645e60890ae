"""A client application's own Django settings, as a team moving from SES has them: django-anymail's Amazon SES
backend, pointed at Postwerk by AMAZON_SES_CLIENT_PARAMS (tests/test_ses_compat.py runs it in a subprocess)."""

import os

SECRET_KEY = "client-app-not-postwerk"
INSTALLED_APPS = ["anymail"]
EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
ANYMAIL = {
    "AMAZON_SES_CLIENT_PARAMS": {
        "endpoint_url": os.environ["SES_ENDPOINT_URL"],
        "region_name": "eu-central-1",
        "aws_access_key_id": os.environ["SES_ACCESS_KEY_ID"],
        "aws_secret_access_key": os.environ["SES_SECRET_ACCESS_KEY"],
    },
}
