"""Writing a file whole or not at all: to a temporary file beside it, then renamed into place."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

__all__ = ["atomic_text", "write_text_atomic"]


@contextmanager
def atomic_text(path: Path, *, fsync: bool = False) -> Iterator[TextIO]:
    """A text file to write ``path`` through: a temporary file beside it (``.NAME.PID.tmp``) that replaces
    ``path`` when the block ends without error, so a reader never sees half a file; on error it is removed
    and ``path`` is left as it was.

    An `OSError` about the temporary file (a folder that cannot be written, a disk that is full) is raised
    naming ``path``, the file the caller asked for, not the temporary name it never chose. A symbolic link is
    written through (the file it points to is replaced); a folder or a special file (a device, a pipe) at
    ``path`` is refused, never replaced.
    """
    if path.is_symlink():
        path = path.resolve()
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "not a regular file (a device or a pipe); give a file to write", str(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent))
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename in (str(tmp), tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) as `atomic_text` does."""
    with atomic_text(path) as fh:
        fh.write(text)
