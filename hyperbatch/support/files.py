"""Atomic file writes: the one way HyperBatch replaces a file others may be reading."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never half of one.

    The temporary file is created beside `path` (same filesystem, so the rename is
    atomic) with mode 0600 from its first byte, then given `mode`; a secret is never
    readable by others even for an instant. On failure the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
