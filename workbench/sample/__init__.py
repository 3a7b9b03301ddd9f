"""The sample RD-Agent installation: test data for tests, the demo and the benchmarks.

Not part of the archive: nothing outside this package and the interfaces imports it. It writes
what the readers (`workbench.rdagent`) read, quirks included, and takes the formats' shared
constants from them rather than restating them.

Modules, named for what they make:

* `plan` + `request`: what to write (runs, loops, workspaces, times; the A/B request) — pure data
* `workspaces`, `results`, `tables`, `templates`: workspace folders and their files
* `metadata`: the JSON metadata files in every shape the spec lists
* `logs`: log trace folders
* `registry_rows` + `registry`: the rows and the WAL-mode `registry.sqlite`
* `builder`: write order and worker processes; `manifest`: the expected sets
* `generate`: the entry point, `generate_sample(out, seed=...)`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.exports import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from workbench.sample.generate import MANIFEST_NAME as MANIFEST_NAME
    from workbench.sample.generate import SampleInfo as SampleInfo
    from workbench.sample.generate import auto_workers as auto_workers
    from workbench.sample.generate import generate_sample as generate_sample
    from workbench.sample.generate import read_manifest as read_manifest

_EXPORTS = {
    name: "generate"
    for name in ("MANIFEST_NAME", "SampleInfo", "auto_workers", "generate_sample", "read_manifest")
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
