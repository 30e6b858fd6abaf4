"""The ``spaq`` typer app, its error handling and the list of commands.

Errors a user can cause are printed as one line (``spaq: error: ...``) with exit status 2;
nothing else is printed and no partial output file is left. So is an ``OSError`` that reaches the top
(a file the system refuses to write or read; ``SPAQ_DEBUG=1`` shows its traceback instead). Ctrl-C: ``spaq: interrupted``,
exit status 130; a command that saved its progress raises :class:`~spaq.errors.Interrupted` instead, printed as
``spaq: interrupted: <how to go on>`` with status 128 + the signal's number.

Commands: every module named in :data:`COMMANDS` has ``register(app)``, which adds its
command (or group) to the app; a new command is a new module and one more name here. The
modules import only typer at import time (heavy imports are inside the command functions),
so ``import spaq.cli`` and ``spaq --help`` stay fast.
"""
from __future__ import annotations

import importlib
import os
import sys

# torch's OpenMP threads spin while they wait: with another busy process on a 2-core machine a
# 10 s qastanet call took 11-12 s instead of 0.3 s; passive waiting costs ~7 % when the machine
# is idle and keeps it at 0.46 s when it is not. Set before torch is imported; the user's own
# OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click import exceptions as _click_exc  # noqa: E402
except ImportError:  # older typer depends on click itself
    from click import exceptions as _click_exc

from ..errors import Interrupted, SpaqError  # noqa: E402

__all__ = ["app", "main", "entry", "COMMANDS", "CONTEXT"]

# typer >= 0.20 defines Exit/Abort itself (its vendored click has no such attributes)
_EXIT = tuple({getattr(_click_exc, "Exit", typer.Exit), typer.Exit})
_ABORT = tuple({getattr(_click_exc, "Abort", typer.Abort), typer.Abort})

#: the command modules of this package, in the order ``spaq --help`` lists them
COMMANDS = ("score", "qastanet", "metrics", "demo", "version", "weights", "localize", "evaluate", "batch",
            "generate", "train", "study", "predict")

#: click context settings for the app and every group: ``-h`` as well as ``--help``
CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings=CONTEXT,
                  help="spaq: SPatial Audio Quality - score binaural and ambisonic audio against a reference.")


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"spaq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print the spaq version and exit.")) -> None:
    """spaq: SPatial Audio Quality - score binaural and ambisonic audio against a reference."""


for _name in COMMANDS:
    importlib.import_module(f"{__package__}.{_name}").register(app)


def _type_label(p) -> str:
    """``TEXT``, ``INTEGER``, ``FLOAT``, ``PATH`` for a parameter (click's names)."""
    t = getattr(p, "type", None)
    if t is not None and getattr(t, "name", None):
        return t.name.split()[0].upper()
    bare = p.bare_type() if hasattr(p, "bare_type") else "str"
    return {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}.get(bare, bare.upper())


def _plain_metavars(cmd) -> None:
    """Help texts in the usual style: ``REF DEG`` and ``--format TEXT``, flags without a type
    (typer >= 0.2x shows ``{ref} {deg}`` and ``<str>``/``<bool>`` for every parameter)."""
    try:  # the help option is made on demand and cached: make it now, without a type
        h = cmd.get_help_option(cmd.context_class(cmd, help_option_names=CONTEXT["help_option_names"]))
        if h is not None:
            h.metavar = ""
    except Exception:  # pragma: no cover - another typer/click: help as it comes
        pass
    for p in getattr(cmd, "params", []):
        if getattr(p, "param_type_name", "") == "argument":
            name = (p.metavar or p.name).upper()
            p.metavar = name
            shown = name if p.required else f"[{name}]"
            shown += "..." if p.nargs != 1 else ""
            p._usage_display_name = lambda shown=shown: shown  # typer's usage line wraps it in {}
            p.display_type_rich = lambda ctx, t=_type_label(p): t
        elif getattr(p, "is_flag", False):
            p.metavar = ""
        elif p.metavar is None:
            p.metavar = _type_label(p)
    for sub in getattr(cmd, "commands", {}).values():
        _plain_metavars(sub)


_command = None


def _click_command():
    global _command
    if _command is None:
        _command = typer.main.get_command(app)
        _plain_metavars(_command)
    return _command


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 user error, 130 interrupted)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # with standalone_mode=False a command's typer.Exit(code) comes back as the return value
        rc = _click_command().main(args=args, prog_name="spaq", standalone_mode=False)
    except SpaqError as e:
        msg = " ".join(str(e).split())
        sys.stderr.write(f"spaq: error: {msg}\n")
        return 2
    except _EXIT as e:
        return int(e.exit_code or 0)
    except _click_exc.ClickException as e:
        msg = " ".join(e.format_message().split())
        if msg:  # empty for a group called without a command: its help is already printed
            sys.stderr.write(f"spaq: error: {msg}\n")
        return 2
    except _ABORT:
        sys.stderr.write("spaq: aborted\n")
        return 130
    except Interrupted as e:  # a command that saved its progress says how to go on, in one line
        sys.stderr.write(f"spaq: interrupted: {' '.join(str(e).split())}\n")
        return 128 + e.signum
    except KeyboardInterrupt:
        sys.stderr.write("spaq: interrupted\n")
        return 130
    except OSError as e:  # the file system refused (a folder that cannot be written, a full disk): one line
        if os.environ.get("SPAQ_DEBUG"):
            raise
        what = e.strerror or " ".join(str(e).split())
        sys.stderr.write(f"spaq: error: {what}" + (f": {e.filename}" if e.filename else "") + "\n")
        return 2
    if rc == 130:  # typer's click turns Ctrl-C (KeyboardInterrupt) into status 130 when not standalone
        sys.stderr.write("spaq: interrupted\n")
    return rc if isinstance(rc, int) else 0


def entry() -> None:  # console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
