"""MS3: test (flags: python test.py --help). Paths are set in config.py."""

import sys

import config

from avsbench.engine.evaluate import main

if __name__ == "__main__":
    sys.exit(main("ms3", sys.argv[1:], user_config=config))
