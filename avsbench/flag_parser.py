"""Every flag of every command in both spellings: `--vggish_weights` and `--vggish-weights`,
`--batch-clips` and `--batch_clips`, `--no-channels_last` and `--no_channels_last`.

The published scripts spell their flags with underscores, the `avsbench` commands mostly
with hyphens; users mix them. `FlagParser` (an argparse.ArgumentParser; the sub-commands
of a FlagParser are FlagParsers too) rewrites each `--flag` / `--flag=value` word whose
name is not one of its own options into the option whose name is the same with `-` and
`_` taken as one character, before parsing. A word after `--`, and values, are left as
they are; a name that matches no option is left for argparse to report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def _key(option: str) -> str:
    return option[2:].replace("-", "_")


def normalise(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """`argv` with each `--name[=value]` spelled as the option of `options` it names."""
    known = set(options)
    by_key: dict[str, str] = {}
    for option in options:
        if option.startswith("--"):
            by_key.setdefault(_key(option), option)
    out: list[str] = []
    for index, word in enumerate(argv):
        if word == "--":
            out += argv[index:]
            break
        if word.startswith("--") and len(word) > 2:
            name, equals, value = word.partition("=")
            if name not in known:
                name = by_key.get(_key(name), name)
            word = name + equals + value
        out.append(word)
    return out


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser accepting `-` and `_` alike in its option names (module doc)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        options = [o for action in self._actions for o in action.option_strings]
        return super().parse_known_args(normalise(argv, options), namespace)
