"""Addresses: ``name@node`` strings, and the names they are made of."""

from __future__ import annotations

from typing import NamedTuple

from macp.errors import ConfigError

__all__ = ["Address", "check_address", "check_name"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")
_CHECKED_MAX = 10_000
_checked: set[str] = set()  # addresses found well formed (any thread may add; a race only
# checks one twice)


def check_address(address: object) -> str:
    """Return ``address`` if it is ``name@node`` or a bare name, else raise :class:`ConfigError`.

    Names are those of :func:`check_name`; the node's own actors (``$node``, ``$client``) start
    with ``$``, clients' node names with ``~``, and ``*`` is any node.
    """
    if isinstance(address, str):
        if address in _checked:
            return address
        name, at, node = address.partition("@")
        if _is_name(name.removeprefix("$")) and (
            not at or node == "*" or _is_name(node.removeprefix("~"))
        ):
            if len(_checked) >= _CHECKED_MAX:
                _checked.clear()
            _checked.add(address)
            return address
    raise ConfigError(
        f"address {address!r} is invalid; use name@node or a bare name, each name made of "
        "letters, digits and '_', '-', '.', ':'"
    )


def _is_name(text: str) -> bool:
    return bool(text) and _NAME_CHARS.issuperset(text)


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
