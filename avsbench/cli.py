"""The `avsbench` command line: one subcommand per job, each defined in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from avsbench import stop_signals
from avsbench.errors import InputError, SetupError
from avsbench.fileio import WriteError
from avsbench.flag_parser import FlagParser

# command -> (module with add_arguments(parser) and run(args), one-line help)
COMMANDS = {
    "train": ("avsbench.commands.train", "train a model (as avs_scripts/<folder>/train.sh)"),
    "test": ("avsbench.commands.test", "test a checkpoint (as avs_scripts/<folder>/test.sh)"),
    "evaluate": (
        "avsbench.commands.evaluate",
        "score predicted masks of any codebase under every published protocol",
    ),
    "predict": ("avsbench.commands.predict", "segment the sounding objects of any video file"),
    "maskige": (
        "avsbench.commands.maskige",
        "make COMBO's / VCT's maskiges for a video or dataset with segment-anything",
    ),
    "preprocess": ("avsbench.commands.preprocess", "raw videos -> the official AVSBench layouts"),
    "make-toy-data": (
        "avsbench.commands.make_toy_data",
        "write a synthetic AVSBench (S4, MS3, AVSS)",
    ),
    "check-data": ("avsbench.commands.check_data", "check a dataset before training (read-only)"),
    "leaderboard": ("avsbench.commands.leaderboard", "a table of models x protocols, charts"),
    "models": ("avsbench.commands.models", "the model zoo, and which files are downloaded"),
    "download": ("avsbench.commands.download", "fetch and verify a released checkpoint"),
    "app": ("avsbench.commands.app", "a local web app: segment the sounding objects of a video"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = FlagParser(prog="avsbench", description=__doc__)  # sub-commands: FlagParsers
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        own_help = getattr(module, "OWN_HELP", True)  # False: --help goes to its flags' parser
        command = sub.add_parser(  # DESCRIPTION: the user's text, where the docstring is not
            name,
            help=help_text,
            description=getattr(module, "DESCRIPTION", module.__doc__),
            add_help=own_help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(_run=module.run, _own_help=own_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "_own_help", True):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    else:  # train / test: the setting's own parser reads the rest (and --help)
        args.flags = rest
    try:
        with stop_signals.installed():  # SIGTERM stops as Ctrl-C does
            return int(args._run(args) or 0)
    except SetupError as err:  # e.g. a bad $AVSBENCH_STOP_SIGNAL
        print(f"avsbench: {err}", file=sys.stderr)
        return 2
    except (InputError, FileExistsError) as err:  # a bad flag or file: one line, no traceback
        print(f"avsbench: {err}", file=sys.stderr)
        return 2
    except WriteError as err:  # disk full, read-only folder
        print(f"avsbench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(stop_signals.stopped_message(), file=sys.stderr)
        return stop_signals.exit_status()


if __name__ == "__main__":
    sys.exit(main())
