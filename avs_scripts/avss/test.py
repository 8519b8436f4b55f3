"""AVSS: test (flags: bash test.sh --help). Paths are set in config.py."""

import sys

import config

from avsbench.commands.test import main

if __name__ == "__main__":
    sys.exit(main(config.SETTING, sys.argv[1:], user_config=config))
