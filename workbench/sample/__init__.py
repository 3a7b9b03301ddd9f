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

from workbench.sample.generate import MANIFEST_NAME, SampleInfo, auto_workers, generate_sample, read_manifest

__all__ = ["MANIFEST_NAME", "SampleInfo", "auto_workers", "generate_sample", "read_manifest"]
