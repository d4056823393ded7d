"""The command line: parse, load the config, call the API. Nothing else lives here.

Each subcommand is a module in ``deepfit.commands`` with ``register(subparsers)``;
errors a user can cause print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from typing import Sequence

from deepfit.errors import DeepfitError, StorageError
from deepfit.interrupt import Interrupted

COMMANDS = ("train", "list", "schedule", "find-lr", "compare", "report", "predict", "transfer", "diagnose", "plot", "reproduce",
            "new", "export")

EPILOG = """examples:
  deepfit train configs/leaky_relu.toml
  deepfit train configs/selu_100.toml --seed 1 --epochs 2 training.batch_size=64
  deepfit list initializers
  deepfit new default --depth 20 --out deep.toml
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(prog="deepfit", description="Train deep feed-forward networks well; compare techniques honestly.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from deepfit import __version__

    parser.add_argument("--version", action="version", version=f"deepfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"deepfit.commands.{name.replace('-', '_')}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the program itself, deepfit's own process: JAX's compilation cache is ours to set
        from deepfit.train import compile_cache

        compile_cache.use()  # from the start: loading a model, MC passes, schedules compile too, not only runs
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before a command began (parsing, imports): nothing to resume yet
        print("deepfit: interrupted before anything started", file=sys.stderr)
        return 130
    finally:
        if argv is None:  # the program itself (not a call from Python): only the interpreter's exit is left
            _ignore_signals_while_exiting()


def _ignore_signals_while_exiting() -> None:
    """The work is done and recorded; a signal now would only turn the interpreter's teardown (JAX's
    exit handlers included) into a traceback or a death by signal."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    # KEY=VALUE overrides may come after options too (argparse alone stops at the first option).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args) or 0)
    except Interrupted as e:
        print(f"deepfit: {e}. {how_to_continue(args, list(sys.argv[1:] if argv is None else argv), e)}",
              file=sys.stderr)
        return e.exit_code
    except StorageError as e:  # not the user's input: sysexits' EX_IOERR, so a job script can tell
        print(f"deepfit: error: {e}", file=sys.stderr)
        return 74
    except DeepfitError as e:
        print(f"deepfit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepfit: interrupted; a run's last checkpoint is kept: continue a training run with the same "
              "command and --resume, an experiment (compare, reproduce) with the same command", file=sys.stderr)
        return 130


def how_to_continue(args, argv: list[str], e: Interrupted) -> str:
    """The command that picks up where a signal stopped: ``train`` needs --resume (and the run's --out);
    ``compare`` and ``reproduce`` resume by themselves."""
    if args.command != "train":
        return f"To continue, run the same command again: {shlex.join(['deepfit', *argv])}"
    argv = list(argv)
    if getattr(args, "out", None) is None and e.runs:
        argv += ["--out", e.runs[0]]
    if "--resume" not in argv:
        argv.append("--resume")
    return f"To continue: {shlex.join(['deepfit', *argv])}"


if __name__ == "__main__":
    sys.exit(main())
