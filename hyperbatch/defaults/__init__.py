"""The configuration local mode runs with when none is given.

`hyper local up` uses, in order: `--config DIR`, $HYPERBATCH_CONFIG,
./configurations, and then this directory, so `pip install hyperbatch` and
`hyper local up` work in any directory. One region, one queue (`batch`),
one definition (`standard`); `hyper local status` names the directory in use.
"""

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
