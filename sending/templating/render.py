"""Rendering a template with a model, in a sandbox. Pure: sources and a JSON model in, strings out; no database.

The language is Jinja2 (`{{ name }}`, `{% if %}`, `{% for %}`, `{% include "partial-alias" %}`, filters), run in
its ImmutableSandboxedEnvironment: templates are written by customers, so they may not reach Python internals
(`__class__`, `mro`, function globals), call unsafe methods or change the model. HTML parts are autoescaped.

Bounds. A render may take at most `Limits.timeout` seconds of CPU time and write at most `Limits.max_output`
characters per part. The sandbox has no preemption, so the budget is checked cooperatively at every point where a
template can spend time or memory: each loop iteration (the parse tree's `for` iterables are wrapped), each call and
filter, each attribute or item access, each output expression and string concatenation, and before the operators
that can build big values (`*`, `**`, `%`, `+`). Filter and method arguments above `Limits.max_argument` (as in
`"x"|center(10**9)`) are refused before the work is done. `range()` is the sandbox's own (100,000 items at most).

A layout is a template whose HTML and text say where the content goes: `{{ content }}` (the template's rendered
HTML, already escaped, or its text). CSS in `<style>` elements is inlined into `style` attributes with css-inline
(remote stylesheets are never fetched), and a template without text gets one made from its final HTML by
inscriptis (tables laid out as text, links as `[text](url)`).
"""

from __future__ import annotations

import contextvars
import functools
import re
import textwrap
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import css_inline
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from jinja2 import BaseLoader, ChainableUndefined, StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateError, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from mail.errors import PostwerkError

# The parts of a template, in the order they are rendered; errors name one of these (or "layout.html", ...).
PARTS = ("subject", "html", "text")


@dataclass(frozen=True)
class Source:
    """The text of one template version (or a layout, or a partial). Empty html or text means none."""

    subject: str = ""
    html: str = ""
    text: str = ""


@dataclass(frozen=True)
class Limits:
    timeout: float = 1.0  # CPU seconds for the whole message (every part, layout and partial)
    max_output: int = 1_000_000  # characters per rendered part
    max_argument: int = 100_000  # largest integer a filter or method may be given (a width, a count)


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str | None
    text: str | None


class RenderError(PostwerkError):
    """A template that cannot be rendered with this model. `part` is where ("html", "layout.text", ...), `line`
    its line when known, `kind` one of: syntax, missing (a strict template's variable the model lacks; `variable`
    names it), limit (time, output or argument over the limits), error (any other failure at run time)."""

    def __init__(
        self, message: str, *, part: str, kind: str, line: int | None = None, variable: str | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.part, self.kind, self.line, self.variable = message, part, kind, line, variable

    def as_dict(self) -> dict:
        return {"part": self.part, "kind": self.kind, "line": self.line, "message": self.message}


# --- the budget: one per render, read by every check point ------------------------------------------------------


class _OverLimit(Exception):  # noqa: N818 - internal; becomes a RenderError(kind="limit")
    pass


@dataclass
class _Budget:
    limits: Limits
    deadline: float
    # (object the name was looked up on or None for the top level, name): what the model lacked, in order.
    missing: list[tuple[Any, str]] | None = None


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)
_partials: contextvars.ContextVar[Mapping[str, Source]] = contextvars.ContextVar(
    "template_partials", default=types.MappingProxyType({})
)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:
        # Outside a render: Jinja folds constant expressions at compile time by calling filters; refusing here
        # makes it leave them for the render, where the budget applies.
        raise _OverLimit("not rendering")
    return budget


def _tick() -> _Budget:
    budget = _current()
    if time.thread_time() > budget.deadline:
        raise _OverLimit(f"The render took longer than {budget.limits.timeout:g} s.")
    return budget


def _check_size(value: Any) -> Any:
    budget = _tick()
    if isinstance(value, str | list | tuple | dict) and len(value) > budget.limits.max_output:
        raise _OverLimit(f"A value grew over {budget.limits.max_output} characters (or items).")
    return value


def _check_arguments(args: Iterable[Any]) -> None:
    limit = _tick().limits.max_argument
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > limit:
            raise _OverLimit(f"The argument {arg} is larger than {limit}.")


# --- the sandbox -------------------------------------------------------------------------------------------------


def _guarded_iter(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


class _Guards(NodeTransformer):
    """Rewrites a parsed template so that loops, concatenations and output expressions pass the budget checks.
    They are filters (direct calls in the compiled code), not calls, which the sandbox would check again."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - the visitor's naming
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_pw_iter", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        node = self.generic_visit(node)
        return nodes.Filter(node, "_pw_size", [], [], None, None, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:  # noqa: N802
        node = self.generic_visit(node)
        node.nodes = [
            child
            if isinstance(child, nodes.TemplateData)
            else nodes.Filter(child, "_pw_size", [], [], None, None, lineno=child.lineno)
            for child in node.nodes
        ]
        return node


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps jinja's pass_context/pass_environment marker
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments([*args, *kwargs.values()])
        if name == "replace" and len(args) >= 3:
            _check_replace(*[a for a in args if isinstance(a, str)][:3])
        return _check_size(function(*args, **kwargs))

    return guarded


def _check_replace(text: str = "", old: str = "", new: str = "") -> None:
    # Refuse before building: replacing "" inserts `new` between every character.
    grown = (len(text) + 1 if old == "" else text.count(old)) * max(len(new) - len(old), 0)
    if len(text) + grown > _current().limits.max_output:
        raise _OverLimit(f"The replacement would grow over {_current().limits.max_output} characters.")


_STR_METHODS_REFUSED = frozenset({"format", "format_map"})  # a format spec such as {:>999999999} allocates first


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+", "//"})

    def __init__(self, *, html: bool, strict: bool, derived: bool = False) -> None:
        super().__init__(
            autoescape=html,
            undefined=_Strict if strict else _Lenient,
            loader=_PartialLoader(html=html, derived=derived),
            cache_size=0,  # templates are compiled and cached by source in _compiled(): no name-keyed cache
            auto_reload=False,
            # A text template made from HTML (text_source) has its block tags alone on their lines: drop those lines.
            trim_blocks=derived,
            lstrip_blocks=derived,
        )
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items() if name != "format"}
        self.filters["_pw_iter"] = _guarded_iter
        self.filters["_pw_size"] = _check_size

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Guards().visit(super()._parse(source, name, filename))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _STR_METHODS_REFUSED:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is refused (is_safe_attribute), not given the sandbox's safe formatter

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - as the base
        _check_arguments([*args, *kwargs.values()])
        if getattr(__obj, "__name__", None) == "replace" and isinstance(getattr(__obj, "__self__", None), str):
            _check_replace(__obj.__self__, *args[:2])
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = _tick().limits
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise _OverLimit(f"The exponent {right} is larger than 64.")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("String formatting with % is not available; use filters.")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > limit.max_output
                ):
                    raise _OverLimit(f"The repetition would make over {limit.max_output} characters (or items).")
        return _check_size(super().call_binop(context, operator, left, right))


class _Lenient(ChainableUndefined):
    """A missing variable renders as nothing (and `user.name` of a missing `user` too); a validation records it."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None, exc: Any = None) -> None:
        super().__init__(hint, obj, name, exc or UndefinedError)
        budget = _budget.get()
        if budget is not None and budget.missing is not None and name is not None:
            budget.missing.append((obj, name))


class MissingVariable(UndefinedError):
    def __init__(self, message: str, obj: Any, name: str | None) -> None:
        super().__init__(message)
        self.obj, self.name = obj, name


class _Strict(StrictUndefined):
    """A missing variable fails the render as soon as it is used (printed, iterated, tested, compared)."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None, exc: Any = None) -> None:
        super().__init__(hint, obj, name, functools.partial(MissingVariable, obj=obj, name=name))


class _PartialLoader(BaseLoader):
    """{% include "alias" %} finds the organization's partial by alias among those the render was given: its HTML
    in an HTML part, its text (or, without one, its HTML) elsewhere."""

    def __init__(self, *, html: bool, derived: bool = False) -> None:
        self.html, self.derived = html, derived

    def load(self, environment: Any, name: str, globals: Any = None) -> JinjaTemplate:  # noqa: A002 - base's name
        partial = _partials.get().get(name)
        if partial is None:
            raise TemplateNotFound(name, f"No partial template with the alias {name!r}.")
        if self.html:
            source = partial.html
        elif self.derived:  # the text made from a template's HTML includes the text made from the partial's
            source = partial.text or text_source(partial.html)  # type: ignore[assignment]
            if source is None:
                raise _Underivable(name)
        else:
            source = partial.text or partial.html
        return _compiled(environment, source)


class _Underivable(Exception):  # noqa: N818 - internal: fall back to converting each rendered HTML
    pass


_ENVIRONMENTS = {
    (html, strict): _Sandbox(html=html, strict=strict) for html in (True, False) for strict in (True, False)
}
_DERIVED = {strict: _Sandbox(html=False, strict=strict, derived=True) for strict in (True, False)}


@functools.lru_cache(maxsize=1024)
def _compiled(environment: _Sandbox, source: str) -> JinjaTemplate:
    """Compile once per source text: the batch API renders one template for hundreds of models."""
    return environment.from_string(source)


# --- rendering ---------------------------------------------------------------------------------------------------


_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False)
_TEXT_CONFIG = ParserConfig(css=CSS_PROFILES["strict"].copy(), display_links=True)
_LINE_BREAKS = re.compile(r"\s*[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+\s*")


def render(
    source: Source,
    model: Mapping[str, Any],
    *,
    layout: Source | None = None,
    partials: Mapping[str, Source] | None = None,
    strict: bool = False,
    limits: Limits | None = None,
) -> Rendered:
    """The message a template makes for `model`. Raises RenderError."""
    return _render(source, model, layout=layout, partials=partials or {}, strict=strict, limits=limits or Limits())


def _render(
    source: Source,
    model: Mapping[str, Any],
    *,
    layout: Source | None,
    partials: Mapping[str, Source],
    strict: bool,
    limits: Limits,
    missing: list | None = None,
) -> Rendered:
    # CPU time of this thread, not the wall clock: a render that waits for the CPU on a loaded machine spends no
    # budget, so the same message is never refused for the load of the moment.
    budget_token = _budget.set(_Budget(limits, time.thread_time() + limits.timeout, missing))
    partials_token = _partials.set(partials)
    try:
        # A header is one line: line breaks a template puts in the subject become single spaces.
        subject = _LINE_BREAKS.sub(" ", _part("subject", source.subject, model, html=False, strict=strict)).strip()
        html = None
        if source.html:
            html = _part("html", source.html, model, html=True, strict=strict)
            if layout is not None and layout.html:
                wrapped = {**model, "content": Markup(html)}  # noqa: S704 - rendered and escaped by the sandbox
                html = _part("layout.html", layout.html, wrapped, html=True, strict=strict)
            html = inline_css(html)
        text = None
        if source.text:
            text = _part("text", source.text, model, html=False, strict=strict)
            if layout is not None and layout.text:
                text = _part("layout.text", layout.text, {**model, "content": text}, html=False, strict=strict)
        elif html is not None:
            text = _derived_text(source, model, layout=layout, strict=strict)
            if text is None:
                text = html_to_text(html)
            text = short_lines_text(text)
        return Rendered(subject=subject, html=html, text=text)
    finally:
        _partials.reset(partials_token)
        _budget.reset(budget_token)


def _part(part: str, source: str, model: Mapping[str, Any], *, html: bool, strict: bool, derived: bool = False) -> str:
    environment = _DERIVED[strict] if derived else _ENVIRONMENTS[(html, strict)]
    try:
        template = _compiled(environment, source)
    except TemplateSyntaxError as exc:
        raise RenderError(exc.message or str(exc), part=part, kind="syntax", line=exc.lineno) from exc
    budget = _current()
    pieces, size = [], 0
    try:
        for piece in template.generate(model):
            size += len(piece)
            if size > budget.limits.max_output:
                raise _OverLimit(f"The {part} part is longer than {budget.limits.max_output} characters.")
            pieces.append(piece)
    except _OverLimit as exc:
        raise RenderError(str(exc), part=part, kind="limit", line=_template_line(exc)) from exc
    except MissingVariable as exc:
        name = _variable_path(model, exc.obj, exc.name)
        raise RenderError(
            f"The model has no {name!r}.", part=part, kind="missing", line=_template_line(exc), variable=name
        ) from exc
    except TemplateSyntaxError as exc:  # in an included partial
        raise RenderError(exc.message or str(exc), part=part, kind="syntax", line=exc.lineno) from exc
    except _Underivable:
        raise
    except (RecursionError, MemoryError) as exc:
        raise RenderError("The template recurses or grows too deep.", part=part, kind="limit") from exc
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise RenderError(str(exc), part=part, kind="error", line=_template_line(exc)) from exc
    return "".join(pieces)


def _template_line(exc: BaseException) -> int | None:
    """The template line the error was raised at: Jinja maps its compiled code's frames to "<template>" lines."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _variable_path(model: Mapping[str, Any], obj: Any, name: str | None) -> str:
    """`user.name` for a name missing in model["user"]: find where `obj` sits in the model (dicts and lists)."""
    if obj is missing or isinstance(obj, ChainableUndefined | StrictUndefined):
        return str(name)

    def find(value: Any, path: str) -> str | None:
        if value is obj:
            return path
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in children:
            found = find(child, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None

    where = find(model, "")
    return f"{where}.{name}" if where else str(name)


# --- the text part made from the HTML ----------------------------------------------------------------------------
#
# Converting each rendered HTML to text costs several times the render itself (inscriptis lays out every table),
# and a batch renders one template for hundreds of models. So the conversion is done once per template: its HTML
# *source* is converted with each Jinja tag standing in as a placeholder word, the tags are put back, and each
# message renders that text template, as cheaply as any. A block tag between table rows (a loop over rows) would
# be moved out of the table by the HTML parser, so it goes in a row (or cell) of its own, and the line it ends up
# alone on is dropped by trim_blocks. When a tag is lost or the statements come out of their order (a structure
# this cannot follow) or a partial cannot be converted, each rendered HTML is converted instead: slower, never wrong.

_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_PLACEHOLDER = re.compile(r"pwjtag(\d+)x")
_BETWEEN_ROWS = re.compile(r"(?:<(?:table|tbody|thead|tfoot)\b[^>]*>|</(?:tr|thead|tbody|tfoot)\s*>)\s*$", re.I)
_IN_ROW = re.compile(r"(?:<tr\b[^>]*>|</t[dh]\s*>)\s*$", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")


@functools.lru_cache(maxsize=512)
def text_source(html: str) -> str | None:
    """A text template made from an HTML template, or None when it cannot be made faithfully."""
    if _PLACEHOLDER.search(html):
        return None
    tags: list[str] = []
    out: list[str] = []
    position = 0
    for match in _JINJA_TAG.finditer(html):
        out.append(html[position : match.start()])
        token = f"pwjtag{len(tags)}x"
        tags.append(match.group(0))
        if match.group(0).startswith("{%"):
            before = "".join(out[-4:])
            if _BETWEEN_ROWS.search(before):
                token = f"<tr><td>{token}</td></tr>"
            elif _IN_ROW.search(before):
                token = f"<td>{token}</td>"
        out.append(token)
        position = match.end()
    out.append(html[position:])
    text = get_text("".join(out), _TEXT_CONFIG)
    found = [int(n) for n in _PLACEHOLDER.findall(text)]
    blocks = [n for n in found if not tags[n].startswith("{{")]
    # Every tag once, and the statements in their order (a link's URL may come after its text: `[text](url)`).
    if sorted(found) != list(range(len(tags))) or blocks != sorted(blocks):
        return None
    text = "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"
    return _PLACEHOLDER.sub(lambda m: tags[int(m.group(1))], text)


def _tidy(text: str) -> str:
    return _BLANK_LINES.sub("\n\n", "\n".join(line.rstrip() for line in text.splitlines()).strip()) + "\n"


def _derived_text(source: Source, model: Mapping[str, Any], *, layout: Source | None, strict: bool) -> str | None:
    body = text_source(source.html)
    outer = text_source(layout.html) if layout is not None and layout.html else ""
    if body is None or outer is None:
        return None
    try:
        text = _part("html", body, model, html=False, strict=strict, derived=True)
        if outer:
            text = _part("layout.html", outer, {**model, "content": text}, html=False, strict=strict, derived=True)
    except RenderError as exc:
        if isinstance(exc.__cause__, _Underivable):
            return None
        raise
    return _tidy(text)


# --- text lines short enough to read ------------------------------------------------------------------------------
#
# The text part made from the HTML is wrapped at words, as plain-text mail is (RFC 5322 §2.1.1's 78 characters).
# The HTML is left as rendered (the CSS inliner writes the whole document on one line): the composer sends lines
# over 78 characters quoted-printable, on its direct path, at about the cost of a 7bit body
# (sending.intake.composer). Breaking the HTML at whitespace instead cost more than the rest of the render.

_WIDTH = 76


def short_lines_text(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        if len(line) <= _WIDTH:
            lines.append(line)
            continue
        indent = len(line) - len(line.lstrip(" "))
        lines.append(
            textwrap.fill(
                line,
                width=_WIDTH,
                subsequent_indent=" " * indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def inline_css(html: str) -> str:
    """Move <style> rules into style attributes (most mail clients ignore <style>); HTML without any is kept."""
    if "<style" not in html.lower():
        return html
    return _INLINER.inline(html)


def html_to_text(html: str) -> str:
    """The text part for an HTML part: what a reader would see, links written out."""
    return get_text(html, _TEXT_CONFIG).strip() + "\n"


def parse(text: str) -> nodes.Template:
    """The parse tree of one part (for jinja2.meta). Raises TemplateSyntaxError."""
    return _ENVIRONMENTS[(False, False)].parse(text)


def syntax_errors(source: Source, *, layout: Source | None = None) -> list[RenderError]:
    """Every part's syntax error (one per part, with its line)."""
    parts = [(p, getattr(source, p), p == "html") for p in PARTS]
    if layout is not None:
        parts += [("layout.html", layout.html, True), ("layout.text", layout.text, False)]
    errors = []
    for part, text, html in parts:
        try:
            _compiled(_ENVIRONMENTS[(html, False)], text)
        except TemplateSyntaxError as exc:
            errors.append(RenderError(exc.message or str(exc), part=part, kind="syntax", line=exc.lineno))
    return errors


# --- validation --------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What validating a template with a test model found: errors (syntax with lines, failures at run time),
    the variables the model lacks, and the rendered message when it rendered."""

    errors: list[RenderError] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    rendered: Rendered | None = None

    @property
    def valid(self) -> bool:
        return not self.errors


def validate(
    source: Source,
    model: Mapping[str, Any],
    *,
    layout: Source | None = None,
    partials: Mapping[str, Source] | None = None,
    strict: bool = False,
    limits: Limits | None = None,
) -> Report:
    """Check every part's syntax (all errors, not only the first part's), then render leniently to list every
    variable the model lacks; a strict template's missing variables are errors too."""
    report = Report(errors=syntax_errors(source, layout=layout))
    if report.errors:
        return report
    missing: list[tuple[Any, str]] = []
    try:
        report.rendered = _render(
            source,
            model,
            layout=layout,
            partials=partials or {},
            strict=False,
            limits=limits or Limits(),
            missing=missing,
        )
    except RenderError as exc:
        report.errors.append(exc)
    seen: dict[str, None] = {}
    for obj, name in missing:
        if name != "content" or layout is None:
            seen.setdefault(_variable_path(model, obj, name))
    report.missing = list(seen)
    if strict:
        report.errors += [
            RenderError(f"The model has no {name!r}.", part="model", kind="missing", variable=name)
            for name in report.missing
        ]
    return report
