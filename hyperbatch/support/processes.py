"""Signalling a process group, the one way jobs and workers are stopped."""

import os


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False if it is gone.

    Refuses 0 and 1: killpg(0) would signal the caller's own group, and 1 is init.
    """
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
