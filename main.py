"""Gradient Flow Lab: open the window, or run a headless command.

    python main.py [FILE.json]        open the window (optionally with an experiment file)
    python main.py presets            list the presets
    python main.py probe --preset NAME | --experiment FILE [--steps N] [--json]

The headless commands live in cli.py (no Qt); the window in ui/app.py, whose
``main(argv)`` receives the arguments after the program name (``[]`` or
``[FILE.json]``) and returns the exit code.

Exit codes: 0 done; 1 the window cannot start (the GUI or Qt is missing);
2 bad input (unknown command, preset or file, invalid experiment, bad numbers);
3 ``probe`` ran but training diverged; 130 interrupted (Ctrl+C).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
APP_NAME = "gradient-flow-lab"


def _user_cache_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / APP_NAME


def configure_environment() -> None:
    """Thread and cache settings that only take effect before numpy and numba are imported.

    One BLAS/OpenMP thread: the matrices are small, and the training worker and the
    GUI thread already use two cores. numba caches compiled kernels next to their
    source; when that folder is read-only (an installed copy), use the user's cache.
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "NUMBA_CACHE_DIR" not in os.environ:
        source = ROOT / "simulator"
        pycache = source / "__pycache__"
        writable = os.access(pycache if pycache.is_dir() else source, os.W_OK)
        if not writable:
            os.environ["NUMBA_CACHE_DIR"] = str(_user_cache_dir() / "numba")


class InterruptRequest:
    """A SIGINT handler that only notes Ctrl+C (``requested``).

    Installed before the slow imports: a KeyboardInterrupt raised while numba or
    llvmlite imports can land in an import-lock callback, where Python prints
    "Exception ignored" and carries on, so Ctrl+C would be lost. ``main`` then
    either stops at once (exit 130) and puts back the default handler, or, for
    ``export``, leaves the request for the export (ui/export/cli.py), which must
    never get a KeyboardInterrupt while Qt paints."""

    def __init__(self):
        self.requested = False

    def __call__(self, _signum, _frame) -> None:
        self.requested = True


INTERRUPT = InterruptRequest()
if __name__ == "__main__":
    signal.signal(signal.SIGINT, INTERRUPT)

configure_environment()

import argparse  # noqa: E402

import cli  # noqa: E402  (imports numpy and numba, so after configure_environment)

EXIT_NO_GUI = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it

# name -> cli.Subcommand, in the order --help lists them (new commands go in cli.py)
COMMANDS: dict[str, cli.Subcommand] = dict(cli.SUBCOMMANDS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, just that command's arguments are added
    (so running one command never imports what another one needs)."""
    parser = argparse.ArgumentParser(
        prog="main.py",
        usage="%(prog)s [-h] [FILE.json | COMMAND ...]",
        description="Watch the gradient vanish layer by layer, drag in the fix, and watch it "
                    "come back. Without a command, opens the window (with FILE.json if given).",
        epilog="Exit codes: 0 done, 1 the window cannot start, 2 bad input, "
               "3 probe: training diverged. `%(prog)s COMMAND -h` describes a command.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help,
                                  description=command.description or command.help)
        if only is None or name == only:
            command.add_arguments(sub)
    return parser


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py",
                                     usage="%(prog)s [-h] [FILE.json | COMMAND ...]")
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE.json")
    return parser


def run_gui(argv: list[str]) -> int:
    """Hand over to the window. ``argv``: the arguments after the program name."""
    try:
        from ui.app import main as gui_main
    except ImportError as e:
        missing = e.name or str(e)
        if missing.startswith("ui"):
            reason = "the window (ui/app.py) is not available in this copy of the program"
        else:
            reason = f"{missing} is not installed (pip install -e . installs it)"
        print(f"main.py: cannot open the window: {reason} ({type(e).__name__}: {e}).\n"
              f"The headless commands work without it: {', '.join(cli.SUBCOMMANDS)} "
              "(main.py -h).", file=sys.stderr)
        return EXIT_NO_GUI
    return gui_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if signal.getsignal(signal.SIGINT) is INTERRUPT and not (argv and argv[0] == "export"):
        if INTERRUPT.requested:  # Ctrl+C while starting up
            print("main.py: interrupted", file=sys.stderr)
            return 130
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if argv and argv[0] in COMMANDS:
        args = build_parser(only=argv[0]).parse_args(argv)
        try:
            code = cli.run_subcommand(args.command, args, COMMANDS)
            sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
            return code
        except KeyboardInterrupt:
            print(f"main.py {args.command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # the reader went away (`| head -1`): stop quietly, as a tool killed by
            # SIGPIPE would; stdout goes to /dev/null so the exit flush cannot fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
    if argv and argv[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0
    args = _gui_parser().parse_args(argv)
    file = args.file
    if file is not None and not file.exists() and file.suffix == "" and len(file.parts) == 1:
        # a bare word that is no file: a mistyped command, not an experiment to open
        # (a missing FILE.json goes to the window, which says so and opens the default)
        print(f"main.py: error: {str(file)!r} is neither a command ({', '.join(COMMANDS)}) "
              "nor an existing file", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    return run_gui(argv)


if __name__ == "__main__":
    sys.exit(main())
