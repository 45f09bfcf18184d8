"""The ``handgrad`` command: parse, call the library, print.

Every command lives in its own module; this one holds the group and the one place
where errors become a single line ``handgrad: error: …`` and a non-zero exit code
(1 for errors, 2 for bad usage, 130 for Ctrl-C). ``--debug`` (anywhere on the command
line, or ``HANDGRAD_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import click

from handgrad.errors import HandgradError, did_you_mean

__all__ = ["main"]

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_EXPECTED = (HandgradError, ValueError, TypeError, OSError, ArithmeticError)


def error_message(exc: BaseException) -> str:
    """The text of one error, OSError's errno noise removed."""
    if isinstance(exc, OSError) and not isinstance(exc, HandgradError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        text = f"{where}: {exc.strerror}" if where else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, ArithmeticError) and not isinstance(exc, HandgradError):
        text = f"numerical error: {text}"
    return text


def print_error(text: str) -> None:
    """``handgrad: error: <first line>``; further lines (e.g. where to put files) follow."""
    first, *rest = text.strip().splitlines() or [""]
    click.echo(f"handgrad: error: {first}", err=True)
    for line in rest:
        click.echo(f"  {line.strip()}", err=True)


def _show_warning(
    message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> None:
    """Warnings as one line each, like errors."""
    click.echo(f"handgrad: warning: {message}", err=True)


#: Every command, in the order ``handgrad --help`` lists them: its module is imported
#: only when the command runs, so that ``--help`` and ``--version`` load no scikit-learn.
COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "gradcheck",
    "explain",
    "search",
    "plot",
    "datasets",
    "export",
)


def _short_help(name: str, limit: int) -> str:
    """A command's one-line help from its module's source, without importing it."""
    path = os.path.join(os.path.dirname(__file__), f"{name}.py")
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "command":
            return click.utils.make_default_short_help(ast.get_docstring(node) or "", limit)
    return ""


class HandgradGroup(click.Group):
    """A click group that turns every expected exception into one line, and imports a
    command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            # only the command that runs is imported: `predict` loads no plotting
            module = importlib.import_module(f"handgrad.cli.{cmd_name}")
            self.add_command(module.command, cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            ctx.fail(f"No such command {name!r}{did_you_mean(name, COMMANDS)}.")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, _short_help(name, limit)) for name in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        # `train --device cuda` trains under scikit-learn's array API dispatch, which
        # needs SciPy's array API mode, read once when SciPy is first imported: that is
        # after this line, as no command module is imported yet.
        os.environ.setdefault("SCIPY_ARRAY_API", "1")
        debug = "--debug" in args or os.environ.get("HANDGRAD_DEBUG", "") not in ("", "0")
        args = [a for a in args if a != "--debug"]
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                rv = super().main(
                    args,
                    prog_name=prog_name or "handgrad",
                    complete_var=complete_var,
                    standalone_mode=False,
                    **extra,
                )
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            if debug:
                raise
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                path = " ".join(["handgrad", *ctx.command_path.split()[1:]])
                hint = f" (see '{path} --help')"
            print_error(exc.format_message() + hint)
            sys.exit(exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            if debug:
                raise
            click.echo("handgrad: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except _EXPECTED as exc:
            if debug:
                raise
            print_error(error_message(exc))
            sys.exit(EXIT_ERROR)
        except Exception as exc:
            if debug:
                raise
            print_error(
                f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
            )
            sys.exit(EXIT_ERROR)
        sys.exit(rv if isinstance(rv, int) else 0)


def _version_message() -> str:
    """``--version``'s lines: the version, and whether the compiled step was built (found
    without importing it: ``--version`` loads no NumPy)."""
    built = importlib.util.find_spec("handgrad._fused") is not None
    step = (
        "built"
        if built
        else "not built (no C compiler at install): training runs on the NumPy engines, "
        "to the same numbers, 1.7–2.9× slower on small networks"
    )
    return f"%(prog)s, version %(version)s\ncompiled step: {step}"


@click.group(cls=HandgradGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="handgrad", prog_name="handgrad", message=_version_message())
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    help="Show the full traceback of an error (allowed anywhere on the line).",
)
def main() -> None:
    """handgrad: neural-network classifiers whose every gradient is derived by hand.

    Start with `handgrad train` (the notes' two-layer network on scikit-learn's
    digits), then look at the run folder it prints.
    """
