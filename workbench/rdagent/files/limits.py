"""Size limits of the RD-Agent files that are parsed, one per kind, in one place.

Why: a reader holds a whole file in memory and Python objects are many times larger than the text
they come from, so an unbounded reader lets one hostile file (a 200 MB `qlib_res.csv`) take
gigabytes. Each limit is far above what RD-Agent really writes and low enough that parsing a file
just under it stays well below 1 GB. A file over its limit is refused before it is read
(`read_file_bytes` checks the size on the open descriptor and reads at most limit + 1 bytes).

Files that are only stored, never parsed (models, heavy intermediates) have no limit here: the
object store streams them (`workbench.archive.store.STREAM_ABOVE`).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class FileKind:
    """One kind of parsed file: its size limit and, for messages, what real ones look like."""

    label: str
    max_bytes: int
    typical: str


#: `qlib_res.csv`: about 20 rows, 1-2 KB in practice. 4 MiB holds thousands of times that; the
#: row cap below keeps even a 4 MiB file from turning into a large `metrics_json`.
METRIC_CSV = FileKind("metric CSV (qlib_res.csv)", 4 * MiB, "1-2 KB")

#: workspace_meta.json, experiment_summary.json, manifest.json, model_meta.json, strategy_meta.json,
#: factor_meta.json, factor_perf.json, feedback.json: KBs to a few MB. `json.loads` can make ~25
#: bytes of Python objects per byte of text (`[[],[],...]`), so 16 MiB stays under ~400 MB.
JSON_METADATA = FileKind("JSON metadata file", 16 * MiB, "a few KB to a few MB")

#: `ret.pkl`: one row per trading day, 9 float columns; ~100 KB to a few MB even for decades.
#: The restricted unpickler builds numpy arrays about the size of the pickle, so 64 MiB is safe.
RETURNS_PICKLE = FileKind("return-series pickle (ret.pkl)", 64 * MiB, "100 KB to a few MB")

#: `ret_schema.json` / `signals.json` (pandas `orient="table"`): records of 10-25 fields. A return
#: series is well under 1 MB; top-k signals of several years are tens of MB. Such records take ~5x
#: their text as Python dicts (~800 MB in the adversarial worst case); the archive parses neither.
TABLE_JSON = FileKind("table JSON (ret_schema.json, signals.json)", 32 * MiB, "under 1 MB to tens of MB")

#: `ret_schema.parquet` / `signals.parquet`: columnar and compressed, a few MB in practice.
#: Parquet decodes to several times its size, so 256 MiB is the most a reader accepts.
TABLE_PARQUET = FileKind("table Parquet (ret_schema.parquet, signals.parquet)", 256 * MiB, "a few MB")

#: Most metric rows one `qlib_res.csv` may have (Qlib writes about 20); more is not a metrics file.
MAX_METRIC_ROWS = 4096

#: Longest metric name accepted (Qlib's longest is ~50 characters).
MAX_METRIC_NAME = 256


def too_big_hint(kind: FileKind) -> str:
    """What a size refusal tells the user: what real files look like and what happens to this one."""
    return (
        f"real ones are {kind.typical}; a file this big is not parsed and is left where it is, "
        "untouched: check what wrote it, or pass a larger max_bytes to the reader to read it anyway"
    )
