"""TOML files users write (scenarios, subject files, baselines), read with one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path


def read_toml(path: Path, what: str, error: type[Exception] = ValueError) -> dict:
    """`path` as a table; `error` with one line naming the file (and `what` it should be) if it cannot be read
    or is not TOML."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a {what}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not TOML: {e}") from None
