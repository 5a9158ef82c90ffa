#!/usr/bin/env python3
"""CDK entry point: reads configurations/ (or -c config_dir=..., or $HYPERBATCH_CONFIG) and builds the stacks.

cdk.json runs it with $HYPERBATCH_PYTHON, else the `python3` first on PATH (an
activated virtualenv's): whichever has requirements-deploy.txt installed.
"""

import sys

DEPLOY_DEPENDENCIES = {"aws_cdk", "constructs", "cdk_nag", "cdk_monitoring_constructs", "jsii", "pydantic"}

if __name__ == "__main__":
    try:
        from stacks.app import main
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in DEPLOY_DEPENDENCIES:
            raise
        sys.exit(
            f"app.py: {sys.executable} has no {error.name}: run the app with the Python that has "
            "requirements-deploy.txt installed (activate its virtualenv, or set HYPERBATCH_PYTHON to it)"
        )
    sys.exit(main())
