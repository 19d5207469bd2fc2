"""Help pages that read in an 80-column terminal.

Typer's own rich help lays every option out as a six-column table; at 80 columns the columns are squeezed until
option names are cut (``--n-constituti…``) and help wraps at a few characters. Here each panel is two columns:
the option names and value (never cut: a long one puts its help on the next line) and the help, wrapped to
the room that is left. Options are grouped by their ``rich_help_panel``; flags show no value placeholder.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text
from typer.core import TyperArgument, TyperCommand, TyperGroup

__all__ = ["App", "HelpCommand", "HelpGroup", "render_help"]

#: Widest help page, even on a wide terminal (longer lines are hard to read).
MAX_WIDTH = 100
#: The name column is at most this wide; a longer name puts its help on the line below.
NAME_COLUMN = 26
_GAP = 2


def _paragraphs(text: str) -> list[str]:
    """A docstring's paragraphs, each joined into one line (a paragraph starting with ``\\b`` kept as is)."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        if para.startswith("\b"):
            out.append(para.removeprefix("\b").strip("\n"))
        else:
            out.append(" ".join(line.strip() for line in para.splitlines()).strip())
    return [p for p in out if p]


def _value_name(param: Any, ctx: Any) -> str:
    """The value placeholder shown after an option (``PATH``, ``INT``, ``a|b``); nothing for a flag."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    shown = str(param.display_type(ctx)).strip("<>").removesuffix(" range")
    if shown.startswith("list[") and shown.endswith("]"):  # a repeatable option: its item's type
        shown = shown[len("list["):-1]
    shown = {"str": "TEXT", "int": "INT", "float": "NUM", "path": "PATH", "bool": "BOOL"}.get(shown.lower(), shown)
    return shown + ("..." if param.nargs != 1 or param.multiple else "")


def _default_text(param: Any) -> str:
    """``[default: …]`` for an option whose default says something, else empty."""
    if param.required or param.show_default is False:
        return ""
    if isinstance(param.show_default, str):
        return f"[default: {param.show_default}]"
    value = param.default
    if value is None or callable(value) or getattr(param, "count", False):
        return ""
    if getattr(param, "is_flag", False):
        if not param.secondary_opts:
            return ""
        return f"[default: {(param.opts if value else param.secondary_opts)[-1]}]"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | tuple):
        if not value:
            return ""
        value = ", ".join(str(v) for v in value)
    return f"[default: {value}]"


def _range_text(param: Any) -> str:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if getattr(param, "count", False) or (low is None and high is None):
        return ""
    if low is not None and high is not None:
        return f"[{low}<=x<={high}]"
    return f"[x>={low}]" if low is not None else f"[x<={high}]"


def _param_row(param: Any, ctx: Any) -> tuple[Text, str]:
    """The name cell (styled) and the help text of one argument or option."""
    name = Text()
    if isinstance(param, TyperArgument):
        name.append(str(param.name).upper(), style="bold cyan")
        if param.nargs != 1:
            name.append("...", style="bold cyan")
    else:
        shorts = [o for o in param.opts if not o.startswith("--")]
        longs = [o for o in param.opts if o.startswith("--")]
        name.append(", ".join([*shorts, *longs]), style="bold cyan")
        if param.secondary_opts:
            name.append(" / " + ", ".join(param.secondary_opts), style="bold magenta")
        value = _value_name(param, ctx)
        if value:
            name.append(" " + value, style="yellow")
    extra = [_range_text(param), _default_text(param) if not isinstance(param, TyperArgument) else "",
             "[required]" if param.required else ""]
    if getattr(param, "envvar", None) and getattr(param, "show_envvar", False):
        extra.append(f"[env var: {param.envvar}]")
    help_text = " ".join(_paragraphs(param.help or "") + [e for e in extra if e])
    return name, help_text


def _rows(rows: Iterable[tuple[Text, str]], width: int) -> Text:
    """Two aligned columns in ``width`` characters: names left (never cut), help wrapped on the right."""
    rows = list(rows)
    name_width = min(max((len(n.plain) for n, _ in rows), default=0), NAME_COLUMN)
    help_width = max(width - name_width - _GAP, 20)
    out = Text()
    for i, (name, help_text) in enumerate(rows):
        if i:
            out.append("\n")
        lines = textwrap.wrap(help_text, help_width, break_on_hyphens=False) or [""]
        indent = " " * (name_width + _GAP)
        if len(name.plain) > name_width:
            out.append_text(_fold(name, width))
            lines = [indent + line for line in lines if line]
            if lines:
                out.append("\n" + "\n".join(lines))
            continue
        out.append_text(name)
        out.append(" " * (name_width - len(name.plain) + _GAP) + lines[0])
        for line in lines[1:]:
            out.append("\n" + indent + line)
    return out


def _fold(name: Text, width: int) -> Text:
    """A name wider than the whole panel, broken into lines (never cut)."""
    if len(name.plain) <= width:
        return name
    parts = name.divide(range(width, len(name.plain), width))
    return Text("\n").join(parts)


def _panel(title: str, body: Text, width: int) -> Panel:
    return Panel(body, title=title, title_align="left", border_style="dim", width=width, padding=(0, 1))


def render_help(command: Any, ctx: Any) -> None:
    """Print ``command``'s help page (usage, description, one panel per group of options, sub-commands)."""
    console = Console(highlight=False)
    width = min(console.width, MAX_WIDTH)
    inner = width - 4  # the panel's border and padding
    blocks: list[Any] = [Text(""), Text(" " + command.get_usage(ctx).strip(), style="bold"), Text("")]
    for para in _paragraphs(command.help or ""):
        blocks.append(Text("\n".join(" " + line for line in _wrap_block(para, width - 1))))
        blocks.append(Text(""))
    panels: dict[str, list[tuple[Text, str]]] = {}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        default = "Arguments" if isinstance(param, TyperArgument) else "Options"
        panel = getattr(param, "rich_help_panel", None) or default
        panels.setdefault(panel, []).append(_param_row(param, ctx))
    order = ["Arguments", "Options"] + [p for p in panels if p not in ("Arguments", "Options")]
    for title in order:
        if panels.get(title):
            blocks.append(_panel(title, _rows(panels[title], inner), width))
    if isinstance(command, TyperGroup):
        commands: dict[str, list[tuple[Text, str]]] = {}
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            first = (_paragraphs(sub.help or "") or [""])[0]
            panel = getattr(sub, "rich_help_panel", None) or "Commands"
            commands.setdefault(panel, []).append((Text(name, style="bold cyan"), first))
        for title, rows in commands.items():
            blocks.append(_panel(title, _rows(rows, inner), width))
    if command.epilog:
        for para in _paragraphs(command.epilog):
            blocks.append(Text("\n".join(" " + line for line in _wrap_block(para, width - 1))))
    console.print(Group(*blocks), width=width, crop=False, soft_wrap=False)


def _wrap_block(text: str, width: int) -> list[str]:
    out: list[str] = []
    for line in text.splitlines() or [""]:
        out.extend(textwrap.wrap(line, width, break_on_hyphens=False) or [""])
    return out


class HelpCommand(TyperCommand):
    """A typer command whose ``--help`` is `render_help`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        render_help(self, ctx)


class HelpGroup(TyperGroup):
    """A typer group whose ``--help`` is `render_help`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        render_help(self, ctx)


class App(typer.Typer):
    """`typer.Typer` whose groups and commands print `render_help` pages."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        """`typer.Typer.command` with `HelpCommand` as the default class."""
        kwargs.setdefault("cls", HelpCommand)
        return super().command(name, **kwargs)
