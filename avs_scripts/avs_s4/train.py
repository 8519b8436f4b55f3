"""S4: train (flags: python train.py --help). Paths are set in config.py."""

import sys

import config

from avsbench.engine.train import main

if __name__ == "__main__":
    sys.exit(main("s4", sys.argv[1:], user_config=config))
