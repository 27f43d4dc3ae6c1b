"""An exclusive lock on a folder, shared by the processes of one machine (flock, released on close)."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def folder_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` for the block; other holders wait."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
