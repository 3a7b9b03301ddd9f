"""Lazy public APIs for the packages: `from workbench.archive import archive` without paying for
every module of the package at import time.

Each package's `__init__.py` names its public functions and the modules that define them; a name
is imported on first use (PEP 562). The command line starts in a fraction of a second because
of this, and the import-linter contracts still see every dependency (they read the modules).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for `package`: each public name imported on first use.

    `exports` maps a public name to the module (relative to `package`) that defines it.
    """
    names = sorted(exports)

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def dir_() -> list[str]:
        return list(names)

    return names, getattr_, dir_
