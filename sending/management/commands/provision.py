"""`manage.py provision`: create (or reuse) an organization, its sender domain and an API key, for scripts; with
`--owner EMAIL`, make that person its owner and print a one-time sign-in link to the dashboard."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from accounts.audit import Actor, acting_as
from accounts.first_run import FirstRunError, owner_attach, sign_in_link_create, sign_in_link_url
from accounts.services import (
    api_key_create,
    organization_get_or_create,
    ses_access_key_issue,
    smtp_credential_create,
)
from sending.domains.platform_names import PlatformNamesNotSet, require_platform_names
from sending.domains.service import DomainError, dns_records, domain_get_or_create
from sending.domains.verification import domain_verify
from sending.models import DnsCheck


class Command(BaseCommand):
    help = "Create or reuse an organization and sender domain, generate its DKIM key and a new API key."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--org", required=True, help="Organization name")
        parser.add_argument("--domain", action="append", default=[], help="Sender domain (repeatable)")
        parser.add_argument("--api-key-name", default="default", help="Name of the API key to create")
        parser.add_argument("--no-api-key", action="store_true", help="Do not create an API key")
        parser.add_argument("--smtp-credential", metavar="NAME", help="Also create an SMTP credential of this name")
        parser.add_argument(
            "--ses-credential",
            action="store_true",
            help="Give the new API key an SES access key (ses_access_key_id, ses_secret_access_key) for the "
            "SES-compatible API",
        )
        parser.add_argument(
            "--sandbox",
            action="store_true",
            help="Make the API key (and SMTP credential) sandbox ones: their mail is captured, never delivered",
        )
        parser.add_argument("--verify", action="store_true", help="Check each domain's DNS now and report it")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON")
        parser.add_argument(
            "--owner",
            metavar="EMAIL",
            help="Make this person an owner (creating the user if needed) and print a one-time sign-in link",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        # Everything this command changes is in the audit log as done at the console.
        with acting_as(Actor.system("manage.py provision")):
            self._handle(options)

    def _handle(self, options):  # type: ignore[no-untyped-def]
        if options["ses_credential"] and options["no_api_key"]:
            raise CommandError("--ses-credential gives the new API key an SES access key: drop --no-api-key.")
        if options["domain"]:
            # Refused before anything is created: records pointing at this machine's name would be published by
            # the owner and then fail Postwerk's own checks.
            try:
                require_platform_names()
            except PlatformNamesNotSet as exc:
                raise CommandError(str(exc)) from exc
        organization, _ = organization_get_or_create(name=options["org"])
        owner = None
        if options["owner"]:
            try:
                user, _, user_created = owner_attach(organization=organization, email=options["owner"])
            except FirstRunError as exc:
                raise CommandError(str(exc)) from exc
            owner = {
                "email": user.email,
                "user_created": user_created,
                "sign_in_link": sign_in_link_url(sign_in_link_create(user=user, organization=organization)),
            }
        domains = []
        for name in options["domain"]:
            try:
                domain, _ = domain_get_or_create(organization=organization, name=name)
            except DomainError as exc:
                raise CommandError(str(exc)) from exc
            domains.append(domain)
        api_key, ses = None, None
        if not options["no_api_key"]:
            # Keys are secrets shown once, so each run makes a new one under a unique name.
            name = _unique_name(organization.api_keys, options["api_key_name"])
            key, api_key = api_key_create(organization=organization, name=name, sandbox=options["sandbox"])
            if options["ses_credential"]:
                # The access key acts as this API key (same scopes and limits); its secret exists only now.
                ses_id, ses_secret = ses_access_key_issue(api_key=key)
                ses = {"ses_access_key_id": ses_id, "ses_secret_access_key": ses_secret}
        smtp = None
        if options["smtp_credential"]:
            # Like API keys, the password exists only now; a second run makes a second credential.
            name = _unique_name(organization.smtp_credentials, options["smtp_credential"])
            credential, password = smtp_credential_create(
                organization=organization, name=name, sandbox=options["sandbox"]
            )
            smtp = {"smtp_username": credential.username, "smtp_password": password}
        checks = {}
        if options["verify"]:
            for domain in domains:
                checks[domain.name] = [_check_json(c) for c in domain_verify(domain=domain)]
                domain.refresh_from_db()
        records = [record for domain in domains for record in dns_records(domain)]
        result = {
            "organization": {"id": organization.pk, "name": organization.name},
            "domain": domains[0].name if domains else None,
            "domains": [d.name for d in domains],
            "api_key": api_key,
            "sandbox": options["sandbox"],
            "dns_records": records,
            "verified": {d.name: d.verified_at is not None for d in domains},
        }
        if checks:
            result["checks"] = checks
        if smtp:
            result.update(smtp)
        if ses:
            result.update(ses)
        if owner:
            result["owner"] = owner
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(f"Organization: {organization.name}")
        for domain in domains:
            self.stdout.write(f"Domain: {domain.name}")
        if not owner and not organization.memberships.filter(role="owner").exists():
            self.stdout.write(f"{organization.name} has no owner yet: run again with --owner EMAIL to sign in.")
        if owner:
            self.stdout.write(f"Owner: {owner['email']}{' (new user)' if owner['user_created'] else ''}")
            self.stdout.write(f"Sign-in link (works once, for a limited time): {owner['sign_in_link']}")
        if api_key:
            kind = "Sandbox API key" if options["sandbox"] else "API key"
            self.stdout.write(f"{kind} (shown once): {api_key}")
        if ses:
            self.stdout.write(
                f"SES access key id: {ses['ses_access_key_id']}  secret access key (shown once): "
                f"{ses['ses_secret_access_key']}"
            )
        if smtp:
            self.stdout.write(f"SMTP username: {smtp['smtp_username']}  password (shown once): {smtp['smtp_password']}")
        for record in records:
            by = "  (the platform's operator publishes this one)" if record.get("publisher") == "operator" else ""
            self.stdout.write(f'Publish {record["type"]} {record["name"]}  "{record["value"]}"{by}')
        for name, domain_checks in checks.items():
            for check in domain_checks:
                self.stdout.write(f"{name} {check['name']}: {check['status']} - {check['message']}")


def _unique_name(existing, base: str) -> str:  # type: ignore[no-untyped-def]
    """`base`, or `base-2`, `base-3`… : the first name not taken in `existing`."""
    name, n = base, 1
    while existing.filter(name=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _check_json(check: DnsCheck) -> dict:
    return {"name": check.name, "status": check.status, "message": check.message, "details": check.details}
