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


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A resolver for the package's `__getattr__`: each public name is imported from its module.

    `exports` maps a public name to ``"module"`` (relative to `package`) or ``"module:attribute"``
    when the public name differs from the one in the module (a function named like its module).
    """

    def resolve(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = where.partition(":")
        return getattr(importlib.import_module(f"{package}.{module}"), attribute or name)

    return resolve
