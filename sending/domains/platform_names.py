"""Whether the platform's own DNS names are real, public domain names.

Every record Postwerk recommends to a domain owner points at them (the return-path CNAME, the SPF include, the
DMARC report address, the inbound MX hosts), and every bounce address is at one of them. On a fresh machine
POSTWERK_HOSTNAME defaults to the machine's name (`localhost`, `vm`, `ip-10-0-0-5.ec2.internal`): records
built on that would be published by owners and then fail Postwerk's own checks, so none are printed until the
operator sets a real name. One rule, `domain_name_problem`, decides what a real domain name is.
"""

from __future__ import annotations

import ipaddress
import re

from django.conf import settings

# Names that never resolve on the public DNS: RFC 6761 (localhost, invalid), RFC 6762 (local, mDNS),
# RFC 8375 (home.arpa), ICANN's private-use TLD (internal), and the usual private suffixes of machine names.
PRIVATE_SUFFIXES = ("localhost", "localdomain", "local", "invalid", "internal", "lan", "home.arpa")
# RFC 1035 §2.3.1 letter-digit-hyphen labels (RFC 1123 allows a leading digit).
_LDH_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")

# Where each platform name comes from when it is not set, for messages that say what to set.
_DEFAULTS = {
    "POSTWERK_RETURN_PATH_DOMAIN": "POSTWERK_HOSTNAME, which defaults to this machine's name",
    "POSTWERK_INBOUND_MX_HOSTS": "POSTWERK_RETURN_PATH_DOMAIN",
    "POSTWERK_SPF_INCLUDE": "_spf.POSTWERK_RETURN_PATH_DOMAIN",
    "POSTWERK_DMARC_RUA": "dmarc-reports@ each domain's return-path host",
    "POSTWERK_TRACKING_HOST": "POSTWERK_HOSTNAME, which defaults to this machine's name",
}


def domain_name_problem(name: str) -> str | None:
    """Why ``name`` is not a public domain name mail can use, or None when it is one.

    A real name has at least two labels, each a valid letter-digit-hyphen label (internationalized names in
    their IDNA form), a top-level label that is not all digits, and no private suffix (``localhost``,
    ``.local``, ``.localdomain``, ``.internal``...). IP literals are not domain names.
    """
    text = (name or "").strip().rstrip(".").lower()
    if not text:
        return "it is empty"
    try:
        ipaddress.ip_address(text.strip("[]"))
        return f"{text} is an IP address, not a domain name"
    except ValueError:
        pass
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        return f"{text} is not a valid domain name"
    labels = text.split(".")
    if len(labels) < 2:
        return f"{text} is a single label, not a fully qualified domain name"
    if len(text) > 253 or not all(_LDH_LABEL.match(label) for label in labels):
        return f"{text} is not a valid domain name (letters, digits and hyphens in dot-separated labels)"
    if labels[-1].isdigit():
        return f"{text} is not a domain name (its last label is a number)"
    for suffix in PRIVATE_SUFFIXES:
        if text == suffix or text.endswith(f".{suffix}"):
            return f"{text} ends in .{suffix}, which never resolves on the public DNS"
    return None


def _service_name_problem(name: str) -> str | None:
    """Like domain_name_problem for names with leading underscore labels (``_spf.example.com``, RFC 8552)."""
    labels = (name or "").strip().rstrip(".").split(".")
    while len(labels) > 1 and labels[0].startswith("_") and _LDH_LABEL.match(labels[0][1:].lower()):
        labels = labels[1:]
    return domain_name_problem(".".join(labels))


def _mailto_host(uri: str) -> str:
    address = uri.strip()
    if address.lower().startswith("mailto:"):
        address = address[len("mailto:") :]
    return address.rpartition("@")[2] if "@" in address else ""


def platform_name_problems() -> list[str]:
    """One sentence per platform setting whose value is not a real domain name, naming what to set."""
    values: list[tuple[str, str, str | None]] = [
        (
            "POSTWERK_RETURN_PATH_DOMAIN",
            settings.POSTWERK_RETURN_PATH_DOMAIN,
            domain_name_problem(settings.POSTWERK_RETURN_PATH_DOMAIN),
        )
    ]
    values += [("POSTWERK_INBOUND_MX_HOSTS", h, domain_name_problem(h)) for h in settings.POSTWERK_INBOUND_MX_HOSTS]
    if settings.POSTWERK_SPF_INCLUDE:
        include = settings.POSTWERK_SPF_INCLUDE
        values.append(("POSTWERK_SPF_INCLUDE", include, _service_name_problem(include)))
    if settings.POSTWERK_DMARC_RUA:
        rua = settings.POSTWERK_DMARC_RUA
        values.append(("POSTWERK_DMARC_RUA", rua, domain_name_problem(_mailto_host(rua))))
    return [
        f"{name} is {value!r} (default: {_DEFAULTS[name]}): {problem}." for name, value, problem in values if problem
    ]


def tracking_host_problem() -> str | None:
    problem = domain_name_problem(settings.POSTWERK_TRACKING_HOST)
    if problem is None:
        return None
    default = _DEFAULTS["POSTWERK_TRACKING_HOST"]
    return (
        f"POSTWERK_TRACKING_HOST is {settings.POSTWERK_TRACKING_HOST!r} (default: {default}): {problem}. "
        "Set POSTWERK_HOSTNAME (or POSTWERK_TRACKING_HOST) to a public domain name."
    )


class PlatformNamesNotSet(Exception):
    """The platform's own DNS names are not real domain names: no record can be recommended."""


def platform_names_message(problems: list[str]) -> str:
    return (
        "Postwerk cannot recommend DNS records: the records would point at names that do not exist on the public "
        f"DNS. {' '.join(problems)} Set POSTWERK_HOSTNAME to this platform's public host name (for example "
        "mta.example.com), or set POSTWERK_RETURN_PATH_DOMAIN (and any setting named above) explicitly."
    )


def require_platform_names() -> None:
    """Raise PlatformNamesNotSet, naming the settings to set, unless every platform name is a real one."""
    problems = platform_name_problems()
    if problems:
        raise PlatformNamesNotSet(platform_names_message(problems))


def check_platform_names(app_configs=None, **kwargs) -> list:  # type: ignore[no-untyped-def]
    """Django system check (shown by `migrate`, so by `make run`, and by every management command)."""
    from django.core import checks

    warnings = []
    problems = platform_name_problems()
    if problems:
        warnings.append(
            checks.Warning(
                platform_names_message(problems),
                hint="Until then no DNS records are shown for sender domains and `provision --domain` refuses.",
                id="postwerk.W001",
            )
        )
    tracking = tracking_host_problem()
    if tracking:
        warnings.append(checks.Warning(tracking, id="postwerk.W002"))
    return warnings
