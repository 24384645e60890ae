"""The templates API: list, create, get, update (a new version), delete, versions, restore, validate. Scoped to the
caller's organization; the writes are sending.templating.service's."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scopes import Scope
from sending.api.errors import ApiError
from sending.api.scoping import owned_or_404
from sending.models import Template, TemplateKind, TemplateVersion
from sending.templating import render
from sending.templating.service import (
    TemplateInputError,
    template_create,
    template_delete,
    template_find,
    template_preview,
    template_restore,
    template_update,
    versions_of,
)


class TemplateVersionSerializer(serializers.ModelSerializer):
    layout = serializers.SerializerMethodField(help_text="The layout's id, or null")

    class Meta:
        model = TemplateVersion
        fields = ["number", "name", "subject", "html", "text", "layout", "strict", "created_at"]

    def get_layout(self, version: TemplateVersion) -> int | None:
        return version.layout_id


class TemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    alias = serializers.CharField(allow_null=True)
    kind = serializers.ChoiceField(choices=TemplateKind.choices)
    version = serializers.IntegerField(help_text="The active version's number")
    name = serializers.CharField()
    subject = serializers.CharField()
    html = serializers.CharField()
    text = serializers.CharField()
    layout = serializers.IntegerField(allow_null=True, help_text="The layout's id, or null")
    strict = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, template: Template) -> dict:
        version = template.active_version
        assert version is not None
        return {
            "id": template.pk,
            "alias": template.alias,
            "kind": template.kind,
            "version": version.number,
            "name": version.name,
            "subject": version.subject,
            "html": version.html,
            "text": version.text,
            "layout": version.layout_id,
            "strict": version.strict,
            "created_at": template.created_at.isoformat(),
            "updated_at": template.updated_at.isoformat(),
        }


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class LayoutRefField(serializers.Field):
    """A layout's id or alias, or null for none."""

    def to_internal_value(self, data: object) -> object:
        if isinstance(data, bool) or not isinstance(data, int | str):
            raise serializers.ValidationError("A layout's id or alias, or null.")
        return data

    def to_representation(self, value: object) -> object:
        return value


class TemplateInputSerializer(serializers.Serializer):
    alias = serializers.CharField(max_length=100, required=False, allow_null=True, allow_blank=True)
    kind = serializers.ChoiceField(choices=TemplateKind.choices, required=False)
    name = serializers.CharField(max_length=200, required=False)
    subject = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=2000)
    html = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1_000_000)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1_000_000)
    layout = LayoutRefField(required=False, allow_null=True)
    strict = serializers.BooleanField(required=False)


class ValidateSerializer(serializers.Serializer):
    subject = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    html = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    text = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    layout = LayoutRefField(required=False, allow_null=True, default=None)
    strict = serializers.BooleanField(required=False, default=False)
    test_model = serializers.DictField(required=False, default=dict, help_text="The model to render with")


class ValidationReportSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = serializers.ListField(
        child=serializers.DictField(), help_text="{part, kind (syntax, missing, limit, error), line, message}"
    )
    missing_variables = serializers.ListField(child=serializers.CharField())
    rendered = serializers.DictField(allow_null=True, help_text="{subject, html, text} when it rendered")


def _template(request: Request, ref: str) -> Template:
    organization = request.user.organization
    found = template_find(organization, ref)
    if found is None:
        raise ApiError(404, "No such template.", code="not_found")
    return owned_or_404(Template.objects.select_related("active_version"), organization, "template", pk=found.pk)


def _invalid(exc: TemplateInputError) -> ApiError:
    code = {400: "invalid", 404: "not_found", 409: "conflict"}.get(exc.status, "invalid")
    return ApiError(exc.status, exc.message, {exc.field: [exc.message]}, code)


def _listed(request: Request) -> QuerySet[Template]:
    rows = Template.objects.filter(organization=request.user.organization).select_related("active_version")
    kind = request.query_params.get("kind")
    if kind:
        if kind not in TemplateKind.values:
            raise ApiError(400, "Unknown kind.", {"kind": [f"One of {', '.join(TemplateKind.values)}."]}, "invalid")
        rows = rows.filter(kind=kind)
    return rows.order_by("pk")


REF = OpenApiParameter("ref", str, OpenApiParameter.PATH, description="The template's id or alias")


class TemplatesView(APIView):
    required_scope = Scope.TEMPLATES

    @extend_schema(
        parameters=[OpenApiParameter("kind", str, enum=TemplateKind.values)],
        responses={200: TemplateSerializer(many=True)},
        summary="List templates (with their active version)",
    )
    def get(self, request: Request) -> Response:
        return Response([TemplateSerializer(t).data for t in _listed(request)])

    @extend_schema(
        request=TemplateInputSerializer,
        responses={201: TemplateSerializer},
        summary="Create a template (version 1)",
    )
    def post(self, request: Request) -> Response:
        serializer = TemplateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            template = template_create(organization=request.user.organization, **serializer.validated_data)
        except TemplateInputError as exc:
            raise _invalid(exc) from exc
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)


class TemplateDetailView(APIView):
    required_scope = Scope.TEMPLATES

    @extend_schema(parameters=[REF], responses={200: TemplateSerializer}, summary="A template")
    def get(self, request: Request, ref: str) -> Response:
        return Response(TemplateSerializer(_template(request, ref)).data)

    @extend_schema(
        parameters=[REF],
        request=TemplateInputSerializer,
        responses={200: TemplateSerializer},
        summary="Change a template: the fields given, as a new active version",
    )
    def patch(self, request: Request, ref: str) -> Response:
        template = _template(request, ref)
        serializer = TemplateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        if "kind" in changes and changes.pop("kind") != template.kind:
            raise ApiError(400, "A template's kind cannot change.", {"kind": ["Create a new template."]}, "invalid")
        try:
            template = template_update(template=template, **changes)
        except TemplateInputError as exc:
            raise _invalid(exc) from exc
        return Response(TemplateSerializer(Template.objects.select_related("active_version").get(pk=template.pk)).data)

    @extend_schema(
        parameters=[REF],
        request=TemplateInputSerializer,
        responses={200: TemplateSerializer},
        summary="Change a template (as PATCH: fields left out keep their value)",
    )
    def put(self, request: Request, ref: str) -> Response:
        return self.patch(request, ref)

    @extend_schema(parameters=[REF], responses={204: None}, summary="Delete a template and its versions")
    def delete(self, request: Request, ref: str) -> Response:
        try:
            template_delete(template=_template(request, ref))
        except TemplateInputError as exc:
            raise _invalid(exc) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class TemplateVersionsView(APIView):
    required_scope = Scope.TEMPLATES

    @extend_schema(
        parameters=[REF], responses={200: TemplateVersionSerializer(many=True)}, summary="A template's versions"
    )
    def get(self, request: Request, ref: str) -> Response:
        return Response(TemplateVersionSerializer(versions_of(_template(request, ref)), many=True).data)


class TemplateRestoreView(APIView):
    required_scope = Scope.TEMPLATES

    @extend_schema(
        parameters=[REF, OpenApiParameter("number", int, OpenApiParameter.PATH)],
        request=None,
        responses={200: TemplateSerializer},
        summary="Make an older version active again (written as a new version)",
    )
    def post(self, request: Request, ref: str, number: int) -> Response:
        try:
            template = template_restore(template=_template(request, ref), number=number)
        except TemplateInputError as exc:
            raise _invalid(exc) from exc
        return Response(TemplateSerializer(Template.objects.select_related("active_version").get(pk=template.pk)).data)


class TemplateValidateView(APIView):
    required_scope = Scope.TEMPLATES

    @extend_schema(
        request=ValidateSerializer,
        responses={200: ValidationReportSerializer},
        summary="Render a template with a test model: syntax errors with lines, the variables the model lacks",
    )
    def post(self, request: Request) -> Response:
        serializer = ValidateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            report = template_preview(
                organization=request.user.organization,
                source=render.Source(subject=data["subject"], html=data["html"], text=data["text"]),
                layout=data["layout"],
                strict=data["strict"],
                model=data["test_model"],
            )
        except TemplateInputError as exc:
            raise _invalid(exc) from exc
        return Response(report)
