"""What a batch stage may read from an input folder: regular files.

A folder scan that keeps only `is_file()` paths drops, without a word, a folder named like an
audio file, a symbolic-link loop, a broken link or a pipe. The scans of collect, prepare and
tokenize keep every path with a known suffix instead, and `input_digest` turns the ones that
are not readable files into an OSError whose text says why, which the stage records as that
item's failure.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from midimix.manifest import Item, sha256_file


def not_readable_reason(path: Path) -> str | None:
    """Why `path` is not a regular file to read, in plain words; None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link that loops back on itself"
        if path.is_symlink():
            return f"a broken symbolic link (to {os.readlink(path)})"
        return error.strerror or str(error)
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device)"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def input_digest(path: Path) -> str:
    """sha256 of a regular file; an OSError whose strerror says why for anything else (read
    problems included), never a blocking read of a pipe."""
    reason = not_readable_reason(path)
    if reason is not None:
        raise OSError(errno.EINVAL, reason)
    return sha256_file(path)


def item_digest(item: Item) -> str:
    """`input_digest` of an item's source: the `hash_inputs` of run_items for file stages."""
    return input_digest(item.source)
