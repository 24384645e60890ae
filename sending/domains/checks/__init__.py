"""DNS checks for sender domains: the records an owner must publish and whether DNS really has them.

Plain functions over the dataclasses in ``spec``; the only side effect is DNS lookups through
``mail.dns.resolver()`` (so ``POSTWERK_DNS_SERVERS`` decides who answers). No Django models here:
``checks.run_checks(spec)`` returns ``CheckResult`` values that callers store or show as they like.
"""
