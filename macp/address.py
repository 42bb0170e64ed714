"""Addresses: ``name@node`` strings, and the names they are made of."""

from __future__ import annotations

from typing import NamedTuple

from macp.errors import ConfigError

__all__ = ["Address", "check_name"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid actor or node name, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not name or not _NAME_CHARS.issuperset(name):
        raise ConfigError(
            f"{what} name {name!r} is invalid; use letters, digits and '_', '-', '.', ':'"
        )
    return name


class Address(NamedTuple):
    """An actor's address: its name and the node it lives on."""

    name: str
    node: str

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``name@node``.

        Raises:
            ConfigError: ``text`` is not of that form.
        """
        name, at, node = text.partition("@") if isinstance(text, str) else ("", "", "")
        if not at:
            raise ConfigError(f"address {text!r} must be of the form name@node")
        return cls(check_name(name, "actor"), check_name(node, "node"))

    def __str__(self) -> str:
        return f"{self.name}@{self.node}"
