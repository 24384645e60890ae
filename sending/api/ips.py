"""The sending IPs API: the IPs an organization's mail leaves from (its pools' and the shared default pool's),
with each one's warm-up day, today's use against the allowance, provider states, listings and reputation.
Read only: operators manage IPs and pools in the admin and with `manage.py ips`."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.reputation.ip_status import ip_statuses


class ProviderStateSerializer(serializers.Serializer):
    provider = serializers.CharField()
    provider_label = serializers.CharField()
    action = serializers.ChoiceField(choices=["slow", "suspend"])
    rate = serializers.IntegerField(allow_null=True, help_text="Messages a minute while slowed")
    until = serializers.DateTimeField()
    rule = serializers.CharField()
    reason = serializers.CharField(help_text="The provider's reply that set it")


class IpSerializer(serializers.Serializer):
    address = serializers.CharField()
    ehlo_name = serializers.CharField(help_text="The EHLO name; the address's reverse DNS must give it")
    pool = serializers.CharField()
    enabled = serializers.BooleanField()
    dns_ok = serializers.BooleanField(allow_null=True, help_text="Forward-confirmed reverse DNS at the last check")
    dns_detail = serializers.CharField()
    warmup_day = serializers.IntegerField(allow_null=True, help_text="Day of the warm-up (1 = first); null: warm")
    warmup_days = serializers.IntegerField(help_text="Days in the IP's warm-up schedule")
    allowance = serializers.IntegerField(
        allow_null=True, help_text="Messages per receiving provider today; null: no warm-up limit"
    )
    used_today = serializers.IntegerField(help_text="Messages given to this IP today (UTC), all providers")
    used_by_provider = serializers.DictField(child=serializers.IntegerField())
    provider_states = ProviderStateSerializer(many=True)
    listings = serializers.ListField(child=serializers.DictField())
    reputation = serializers.DictField(
        help_text="state (ok, warning, paused: a paused IP sends nothing until an operator resumes it), why, "
        "changed_at, and the IP's deliveries, hard_bounces, complaints, bounce_rate and complaint_rate"
    )


class IpsView(APIView):
    required_scope = Scope.REPUTATION

    @extend_schema(
        responses={200: inline_serializer("IpList", {"ips": IpSerializer(many=True)})},
        summary="The sending IPs your mail leaves from: warm-up, today's use and allowance, provider states",
    )
    def get(self, request: Request) -> Response:
        rows = ip_statuses(request.user.organization.pk)
        return Response({"ips": IpSerializer([asdict(r) for r in rows], many=True).data})
