"""Finding agent classes by import path (``package.module:Class``), for the CLI and YAML.

Modules are imported from the installed packages and from the current directory."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from macp._supervised import Supervised
from macp.errors import ConfigError

__all__ = ["load_class"]


def load_class(path: object, field: str) -> type[Supervised]:
    """Import the actor class at ``path``; ``field`` names where the path came from.

    Raises:
        ConfigError: the path is malformed, the module fails to import, the class is missing,
            or it is not an Agent subclass.
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise ConfigError(f"{field}: {path!r} is not an import path; write package.module:Class")
    module_name, _, class_name = path.partition(":")
    here = str(Path.cwd())
    if here not in sys.path:  # as `python -m` and uvicorn do: the current directory too
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name != e.name and module_name.startswith(e.name + "."):
            pass  # a parent package is missing: the path is wrong, as below
        elif e.name != module_name:  # found, but it imports something that is missing
            raise ConfigError(
                f"{field}: module {module_name!r} imports {e.name!r}, which is not installed; "
                "install it, or fix that import"
            ) from e
        raise ConfigError(
            f"{field}: cannot import module {module_name!r} ({e}); check the module path and "
            "that its package is installed or on PYTHONPATH"
        ) from e
    except Exception as e:  # ImportError included: the module was found, and failed
        raise ConfigError(
            f"{field}: importing {module_name!r} raised {type(e).__name__}: {e}"
        ) from e
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"{field}: module {module_name!r} has no class {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Supervised)):
        raise ConfigError(f"{field}: {path} is not an Agent subclass")
    return cls
