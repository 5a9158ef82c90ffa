#!/usr/bin/env python3
"""CDK entry point: reads configurations/ (or -c config_dir=..., or $HYPERBATCH_CONFIG) and builds the stacks."""

import sys

from stacks.app import main

if __name__ == "__main__":
    sys.exit(main())
