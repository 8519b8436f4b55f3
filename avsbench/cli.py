"""The `avsbench` command line: one subcommand per job, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from avsbench.errors import InputError
from avsbench.fileio import WriteError

# command -> (module with add_arguments(parser) and run(args), one-line help)
COMMANDS = {
    "make-toy-data": ("avsbench.data.synthetic", "write a synthetic AVSBench (S4, MS3, AVSS)"),
    "preprocess": ("avsbench.preprocess", "raw videos -> the official AVSBench layouts"),
    "predict": ("avsbench.predict", "segment the sounding objects of any video file"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avsbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (InputError, FileExistsError) as err:  # a bad flag or file: one line, no traceback
        print(f"avsbench: {err}", file=sys.stderr)
        return 2
    except WriteError as err:  # disk full, read-only folder
        print(f"avsbench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
