"""Reading a topology file: YAML (environment variables substituted) validated into a
:class:`~macp.topologies.spec.TopologySpec`, then checked against what the schema cannot
see (:mod:`macp.topologies.checks`). Every error names the file, the line and the field, and
says what is expected.

Environment variables may be used in any value as ``${NAME}`` or ``${NAME:-default}``
(upper-case names; unset or empty takes the default; ``${input}`` and ``${deps.x}`` are left
alone for workflow templates).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from macp.errors import ConfigError
from macp.schema import Location, field_path, problems
from macp.topologies.checks import check
from macp.topologies.spec import TopologySpec

__all__ = ["load_spec", "parse_spec"]

_ENV: Final = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def _line(root: yaml.Node | None, loc: Location) -> int:
    """The line (1-based) of the deepest YAML node along ``loc`` that exists."""
    node, line = root, 1
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


class _Problems:
    """Collected errors, each as ``FILE:LINE: FIELD: what is wrong``."""

    def __init__(self, path: str, root: yaml.Node | None) -> None:
        self.path, self.root = path, root
        self.found: list[tuple[int, str]] = []

    def add(self, loc: Location, message: str) -> None:
        self.found.append((_line(self.root, loc), f"{field_path(loc)}: {message}"))

    def raise_if_any(self) -> None:
        """Raise them all, in the order of their lines in the file."""
        if self.found:
            ordered = sorted(self.found, key=lambda found: found[0])
            raise ConfigError("\n".join(f"{self.path}:{line}: {what}" for line, what in ordered))


class _Loader(yaml.SafeLoader):
    """A safe loader that puts environment variables into string scalars as it builds them.

    Substituting after parsing keeps a value's ``: `` or ``#`` from changing the document, and
    leaves comments alone. A plain (unquoted) scalar is typed again after substitution, so
    ``port: ${PORT:-5555}`` is an integer, as if the number had been written in the file.
    """

    def __init__(self, text: str, path: str) -> None:
        super().__init__(text)
        self.path = path

    def substitute(self, node: yaml.ScalarNode) -> Any:
        value = self.construct_scalar(node)
        if "${" not in value:
            return value

        def lookup(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found:  # unset or empty takes the default, as the shell's ${NAME:-default}
                return found
            if default is not None:
                return default
            if found is not None:
                return found
            raise ConfigError(
                f"{self.path}:{node.start_mark.line + 1}: environment variable {name} is not "
                f"set; set it, or write ${{{name}:-default}}"
            )

        text = _ENV.sub(lookup, value)
        if node.style is not None or text == value:
            return text
        tag = self.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        return self.yaml_constructors[tag](self, yaml.ScalarNode(tag, text, node.start_mark))


_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.substitute)


def _compose(text: str, path: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data, with variables substituted."""
    loader = _Loader(text, path)
    try:
        root = loader.get_single_node()
        return root, None if root is None else loader.construct_document(root)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem_mark", None)
        context = getattr(e, "context_mark", None)
        # An unclosed quote or bracket is found at the end of the file; name where it opened.
        at_end = problem is not None and problem.index >= len(text.rstrip())
        mark = context if at_end and context is not None else problem
        line = mark.line + 1 if mark is not None else 1
        what = getattr(e, "problem", None) or e
        if mark is context and getattr(e, "context", None):
            opened = str(e.context).removeprefix("while scanning ")  # type: ignore[attr-defined]
            what = f"{opened} starts here and is never closed"
        raise ConfigError(f"{path}:{line}: not valid YAML: {what}") from e
    finally:
        loader.dispose()


def parse_spec(text: str, path: str = "<topology>") -> TopologySpec:
    """Validate a topology given as YAML text.

    Raises:
        ConfigError: one line per problem, each naming the file, line and field.
    """
    root, data = _compose(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a topology file is a map with name, nodes and agents")
    found = _Problems(path, root)
    try:
        spec = TopologySpec.model_validate(data)
    except ValidationError as e:
        for loc, message in problems(TopologySpec, e):
            found.add(loc, message)
        found.raise_if_any()
        raise  # pragma: no cover - errors() is never empty
    spec.path = path
    check(spec, found.add)
    found.raise_if_any()
    return spec


def load_spec(path: str | os.PathLike[str]) -> TopologySpec:
    """Read and validate a topology file.

    Raises:
        ConfigError: the file cannot be read, or one line per problem in it.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read topology file {file}: {e.strerror}") from e
    return parse_spec(text, str(file))
