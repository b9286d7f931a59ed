"""Error types. A `MidimixError` is a user-facing problem: its message is one line that says
what was expected, what was found and how to fix it. Command lines print it and exit non-zero."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar


class MidimixError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, bad option)."""


class ConfigError(MidimixError, ValueError):
    """An option or configuration value is out of its allowed range."""


class InputError(MidimixError):
    """An input file or folder is missing, unreadable or of the wrong kind."""


class ItemError(MidimixError):
    """One item of a batch failed for a known reason; the batch records it and goes on."""


class DependencyError(MidimixError):
    """A system package or optional Python package is missing."""


F = TypeVar("F", bound=Callable[..., int])

EXIT_ITEMS_FAILED = 1  # the run finished but some items failed
EXIT_USAGE = 2  # bad input or options: nothing (more) was done


def cli_errors(main: F) -> F:
    """Turn a `MidimixError` raised by a command line into one clear line and exit status 2."""

    @wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except MidimixError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {error.filename}" if error.filename else ""
            print(
                f"error: the disk is full{where}; free some space and run again (finished "
                f"items are kept)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted: finished items are kept; run again to resume", file=sys.stderr)
            return 130

    return wrapper  # type: ignore[return-value]
