"""Files written whole or not at all: readers see the old file or the new, never part.

A temporary file beside the target (named for this host, process and thread: several
hosts may share the folder, several threads one process) takes the content and then
replaces the target; on any failure it is removed. Uploads skip `.partial` files.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import IO, Iterator, Optional


@contextlib.contextmanager
def atomic_file(path: Path, binary: bool = False, file_mode: Optional[int] = None, fsync: bool = False) -> Iterator[IO]:
    """A stream whose content becomes `path` when the block ends without an error. The
    folder must exist: a caller that may create it does so itself."""
    partial = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if file_mode is None else file_mode)
    try:
        with os.fdopen(
            descriptor, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})
        ) as stream:
            yield stream
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str, file_mode: Optional[int] = None, fsync: bool = False) -> None:
    with atomic_file(path, file_mode=file_mode, fsync=fsync) as stream:
        stream.write(text)
