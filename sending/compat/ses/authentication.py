"""SES requests are signed with AWS Signature Version 4 by an access key Postwerk issued to an API key
(ApiKey.ses_access_key_id): the key is found by its id, the signature recomputed with its secret, and from then
on the request is that API key's, with the same checks (expiry, networks, scopes, role ceiling) as a bearer one.
"""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication

from accounts.authentication import active_keys, api_key_admit
from mail.crypto import decrypt
from sending.compat.ses.errors import SesError
from sending.compat.ses.signature import path_as_sent, signature_check, signed_parse


class SesSignatureAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):  # type: ignore[no-untyped-def]
        meta = request.META
        signed = signed_parse(meta.get("HTTP_AUTHORIZATION"), meta.get("HTTP_X_AMZ_DATE"))
        api_key = active_keys().filter(ses_access_key_id=signed.access_key_id).first()
        if api_key is None or not api_key.ses_secret_encrypted:
            raise SesError("UnrecognizedClientException", "The security token included in the request is invalid.")
        signature_check(
            signed,
            secret=decrypt(api_key.ses_secret_encrypted).decode(),
            method=request.method,
            path=path_as_sent(meta.get("RAW_URI") or meta.get("REQUEST_URI"), request.path),
            query=meta.get("QUERY_STRING", ""),
            headers=request.headers,
            body=request.body,
            now=timezone.now(),
        )
        return api_key_admit(request, api_key)

    def authenticate_header(self, request):  # type: ignore[no-untyped-def]
        return "AWS4-HMAC-SHA256"
