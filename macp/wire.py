"""Wire data: what crosses nodes unchanged, and how large a message may be by default.

The bottom of the package (with :mod:`macp.errors`): the error hierarchy, the settings and the
envelope all speak of wire data, so it is defined here, below all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_MAX_BYTES", "Wire"]

Wire: TypeAlias = "bool | int | float | str | bytes | Sequence[Wire] | Mapping[str, Wire] | None"
"""Data that crosses nodes unchanged: what msgpack writes natively."""

DEFAULT_MAX_BYTES: Final = 10 * 1024 * 1024
"""The largest payload (a packed body) a message may carry unless a node's settings say more."""
