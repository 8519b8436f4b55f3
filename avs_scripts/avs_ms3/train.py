"""MS3: train (flags: bash train.sh --help). Paths are set in config.py."""

import sys

import config

from avsbench.commands.train import main

if __name__ == "__main__":
    sys.exit(main(config.SETTING, sys.argv[1:], user_config=config))
