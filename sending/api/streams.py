"""The message streams API: list, create (broadcast streams), show, update. Scoped to the caller."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.scoping import owned_or_404
from sending.models import Stream
from sending.streams.service import UPDATABLE, stream_create, stream_update


class StreamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stream
        fields = [
            "id",
            "name",
            "kind",
            "description",
            "track_opens",
            "track_clicks",
            "hourly_limit",
            "daily_limit",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class StreamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    kind = serializers.CharField(max_length=16, default=Stream.Kind.BROADCAST)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    track_opens = serializers.BooleanField(required=False, allow_null=True, default=None)
    track_clicks = serializers.BooleanField(required=False, allow_null=True, default=None)
    hourly_limit = serializers.IntegerField(required=False, allow_null=True, min_value=0, default=None)
    daily_limit = serializers.IntegerField(required=False, allow_null=True, min_value=0, default=None)


class StreamUpdateSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    track_opens = serializers.BooleanField(required=False, allow_null=True)
    track_clicks = serializers.BooleanField(required=False, allow_null=True)
    hourly_limit = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    daily_limit = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class StreamsView(APIView):
    required_scope = Scope.STREAMS

    @extend_schema(responses={200: StreamSerializer(many=True)}, summary="List message streams")
    def get(self, request: Request) -> Response:
        streams = Stream.objects.filter(organization=request.user.organization).order_by("created_at", "id")
        return Response(StreamSerializer(streams, many=True).data)

    @extend_schema(request=StreamCreateSerializer, responses={201: StreamSerializer}, summary="Add a broadcast stream")
    def post(self, request: Request) -> Response:
        serializer = StreamCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        stream = stream_create(organization=request.user.organization, **serializer.validated_data)
        return Response(StreamSerializer(stream).data, status=status.HTTP_201_CREATED)


class StreamDetailView(APIView):
    required_scope = Scope.STREAMS

    def _get(self, request: Request, stream_id: int) -> Stream:
        return owned_or_404(Stream, request.user.organization, "stream", pk=stream_id)

    @extend_schema(responses={200: StreamSerializer}, summary="A message stream")
    def get(self, request: Request, stream_id: int) -> Response:
        return Response(StreamSerializer(self._get(request, stream_id)).data)

    @extend_schema(request=StreamUpdateSerializer, responses={200: StreamSerializer}, summary="Change a stream")
    def patch(self, request: Request, stream_id: int) -> Response:
        stream = self._get(request, stream_id)
        serializer = StreamUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = {k: v for k, v in serializer.validated_data.items() if k in UPDATABLE}
        return Response(StreamSerializer(stream_update(stream=stream, **changes)).data)
