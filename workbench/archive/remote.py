"""An archive in a bucket: ``s3://BUCKET/PREFIX``, used through a local cache folder on each machine.

The bucket holds the immutable, content-addressed files of the archive (``objects/``, ``packs/``,
``manifests/``, ``records/``) plus the run summaries (``runs/``). Each machine works on a **cache**:
an ordinary archive folder (catalog, snapshots, lock, tmp and a copy of the bucket's files) under
``--cache-dir`` / ``WORKBENCH_CACHE_DIR`` / ``$XDG_CACHE_HOME/workbench``, one subfolder per
endpoint, bucket and prefix. The catalog is an index the records rebuild, so it never goes to
the bucket: a new or lost cache is rebuilt from the bucket alone by the next command.

Every command on an ``s3://`` archive runs in a **session** (`remote_session`):

1. **push** what an earlier, interrupted job left un-uploaded, then **pull**: list ``records/``
   first, then the content folders (a record is uploaded only after everything it refers to, so
   whatever a listed record needs is in the second listing), download what the cache lacks, and
   apply the records the cache has not applied, in (seq, written_at, record_id) order, one
   transaction each (`journal.apply_record`). Applied records are the cache's ``records/``
   files, so several machines' records, each with its own sequence numbers, are all applied once;
2. the command itself, on the cache folder, exactly as for a folder archive;
3. **push** (writing commands: in a background thread after each committed transaction, and
   at the end, also after a failure): objects and packs, then manifests, then records LAST, so no record in the bucket ever refers to a file the bucket lacks. Uploads are
   concurrent, conditional and checksummed (`bucket.py`); what was uploaded is remembered in the
   cache (``remote-pushed.txt``), so the next push sends only what is new.

What two machines share, and why nothing is lost: experiments, loops, runs, plans and errors are
keyed by ids that differ between machines; the incremental cursor is per machine
(``registry@<writer>``, `scope.py`); shared library rows (a factor both found, an object both
stored) are after-images of the same thing, so whichever record is applied last is right (their
first-seen metadata, and which machine's pack serves a shared object, may differ between
machines that applied concurrent records in different orders; docs/archive-format.md).
Applying a record raises the cache's sequence to at least the record's, so what a machine
writes after it has seen another's records sorts after them (a Lamport clock).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from workbench.archive import ondemand
from workbench.archive.bucket import THREADS, Bucket, is_s3_uri
from workbench.archive.catalog import open_catalog
from workbench.archive.durable import durable_write_bytes
from workbench.archive.journal import (
    Record,
    ReplayReport,
    apply_record,
    current_seq,
    object_store,
    record_files,
    record_order,
)
from workbench.archive.layout import ArchiveLayout
from workbench.archive.lock import archive_lock
from workbench.archive.packs import is_pack_key, parse_pack_key
from workbench.archive.scope import pop_writer, push_writer
from workbench.archive.snapshots import list_snapshots
from workbench.errors import ArchiveBusyError, ArchiveError, RemoteArchiveError

__all__ = [
    "RemoteArchive",
    "accepts_s3",
    "bound_remote",
    "cache_folder",
    "remote_session",
    "remote_settings",
]

CACHE_ENV = "WORKBENCH_CACHE_DIR"
KEEP_LOCAL_ENV = "WORKBENCH_KEEP_LOCAL"
REMOTE_FILE = "remote.json"
LEDGER_FILE = "remote-pushed.txt"
CONTENT_FOLDERS = ("objects", "packs", "manifests")
_RECORD_KEY = re.compile(r"^records/\d{12}-[0-9a-f]{32}\.json$")

P = ParamSpec("P")
R = TypeVar("R")


# ---------------------------------------------------------------- settings


@dataclass
class RemoteSettings:
    endpoint_url: str | None = None
    cache_dir: Path | None = None
    keep_local: bool = field(default_factory=lambda: os.environ.get(KEEP_LOCAL_ENV) == "1")


_SETTINGS: list[RemoteSettings] = []
_BOUND: dict[Path, RemoteArchive] = {}


@contextmanager
def remote_settings(
    *,
    endpoint_url: str | None = None,
    cache_dir: Path | str | None = None,
    keep_local: bool | None = None,
) -> Iterator[None]:
    """The endpoint, cache folder and whether to keep local copies of uploaded objects, for the
    ``s3://`` archives opened inside the block (the CLI's --endpoint-url and --cache-dir;
    `keep_local` defaults to ``WORKBENCH_KEEP_LOCAL=1``)."""
    settings = RemoteSettings(endpoint_url or None, Path(cache_dir) if cache_dir else None)
    if keep_local is not None:
        settings.keep_local = keep_local
    _SETTINGS.append(settings)
    try:
        yield
    finally:
        _SETTINGS.pop()


def _settings() -> RemoteSettings:
    return _SETTINGS[-1] if _SETTINGS else RemoteSettings()


def cache_folder(uri: str, endpoint: str, cache_dir: Path | str | None = None) -> Path:
    """This machine's cache of `uri`: one subfolder per endpoint, bucket and prefix."""
    base = Path(
        cache_dir
        or os.environ.get(CACHE_ENV)
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench"
    )
    name = uri[len("s3://") :].rstrip("/")
    key = hashlib.sha256(f"{endpoint}\n{name}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60]
    return base.absolute() / f"{slug}-{key}"


def bound_remote(root: Path | str) -> RemoteArchive | None:
    """The remote archive whose session uses the cache folder `root`, if one is open."""
    return _BOUND.get(Path(root).absolute())


# ---------------------------------------------------------------- reports


@dataclass
class PushReport:
    files: int = 0
    uploaded: int = 0
    present: int = 0
    bytes: int = 0
    records: int = 0
    seconds: float = 0.0


@dataclass
class PullReport:
    records: int = 0
    downloaded: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None


# ---------------------------------------------------------------- the remote archive


class RemoteArchive:
    """One ``s3://`` archive seen from this machine: its bucket and its cache folder."""

    def __init__(self, uri: str, *, endpoint_url: str | None = None, cache_dir: Path | str | None = None):
        self.uri = uri.rstrip("/")
        self.bucket = Bucket(self.uri, endpoint_url=endpoint_url)
        self.root = cache_folder(self.uri, self.bucket.endpoint, cache_dir)
        self.layout = ArchiveLayout(self.root)
        self.writer = self._writer_id()
        self._held: dict[str, bool] = {}
        self._listing: dict[str, int] | None = None
        self._push_lock = threading.Lock()
        self._pusher: BackgroundPush | None = None

    def _writer_id(self) -> str:
        """This cache's writer id (host + random, made once): scopes its cursor in the shared catalog."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / REMOTE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if data.get("uri") not in (None, self.uri):
            raise ArchiveError(
                f"cache folder {self.root} belongs to {data.get('uri')}, not {self.uri}; pass another --cache-dir"
            )
        if not data.get("writer"):
            data = {
                "uri": self.uri,
                "endpoint": self.bucket.endpoint,
                "writer": f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
            }
            durable_write_bytes(path, json.dumps(data, indent=2).encode(), self.layout.tmp)
        return str(data["writer"])

    # ------------------------------------------------------------ ledger

    def _ledger(self) -> dict[str, str]:
        """Keys known to be in the bucket (→ a stamp for the mutable run files)."""
        path = self.root / LEDGER_FILE
        known: dict[str, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                key, _, stamp = line.partition("\t")
                if key:
                    known[key] = stamp
        return known

    def _remember(self, entries: list[tuple[str, str]]) -> None:
        if entries:
            with open(self.root / LEDGER_FILE, "a", encoding="utf-8") as out:
                out.write("".join(f"{k}\t{s}\n" for k, s in entries))

    # ------------------------------------------------------------ on demand (`ondemand.Source`)

    def fetch(self, key: str, target: Path) -> bool:
        """Download one stored file the cache does not hold (objects and packs are read on demand)."""
        fetched = self.bucket.get_file(key, target, self.layout.tmp, missing_ok=True)
        if fetched:
            self._remember([(key, "")])
        return fetched

    def remote_size(self, key: str) -> int | None:
        """Size of a content key in the bucket (one listing of objects/ and packs/ per session)."""
        if self._listing is None:
            self._listing = {
                k: f.size for folder in ("objects", "packs") for k, f in self.bucket.listing(folder).items()
            }
        return self._listing.get(key)

    def drop_uploaded(self) -> int:
        """Remove the cache's copies of objects and packs the bucket holds; they are read on demand."""
        known = self._ledger()
        dropped = 0
        for folder in ("objects", "packs"):
            for key, path in _files(self.root, folder):
                if key in known:
                    path.unlink(missing_ok=True)
                    dropped += 1
        return dropped

    # ------------------------------------------------------------ push

    def committed(self) -> None:
        """A transaction committed on the cache: upload it in the background while the job goes on."""
        if self._pusher is not None:
            self._pusher.request()

    def push(self) -> PushReport:
        """Upload what the bucket lacks: content first, records last (one push at a time)."""
        with self._push_lock:
            return self._push()

    def _push(self) -> PushReport:
        started = time.monotonic()
        report = PushReport()
        known = self._ledger()
        # records are listed before the content, so every file they refer to is in the second list
        records = [
            (f"records/{p.name}", p) for p in record_files(self.layout) if f"records/{p.name}" not in known
        ]
        content = [
            (key, path)
            for folder in CONTENT_FOLDERS
            for key, path in _files(self.root, folder)
            if key not in known
        ]
        runs = []
        for key, path in _files(self.root, "runs"):
            st = path.stat()
            if known.get(key) != f"{st.st_size}:{st.st_mtime_ns}":
                runs.append((key, path, f"{st.st_size}:{st.st_mtime_ns}"))
        for phase, files in (("content", content), ("records", records)):
            if not files:
                continue
            uploaded: list[tuple[str, str]] = []

            def note(key: str, _outcome: str, into: list[tuple[str, str]] = uploaded) -> None:
                into.append((key, ""))

            try:
                counts = self.bucket.put_many(files, done=note)
            finally:
                self._remember(uploaded)
            report.files += len(files)
            report.uploaded += counts["uploaded"]
            report.present += counts["present"]
            report.bytes += sum(p.stat().st_size for _, p in files)
            if phase == "records":
                report.records = len(files)
        if runs:
            stamps = {k: s for k, _, s in runs}
            done_runs: list[tuple[str, str]] = []
            try:
                self.bucket.put_many(
                    [(k, p) for k, p, _ in runs],
                    overwrite=True,
                    done=lambda key, _o: done_runs.append((key, stamps[key])),
                )
            finally:
                self._remember(done_runs)
        report.seconds = time.monotonic() - started
        return report

    # ------------------------------------------------------------ pull

    def pull(self, *, lock_wait_s: float = 0.0) -> PullReport:
        """Download and apply the records (and their files) this cache has not applied yet."""
        report = PullReport()
        listed = self.bucket.listing("records")  # first: see the module docstring
        have = {p.name for p in record_files(self.layout)}
        new = sorted(k for k in listed if _RECORD_KEY.match(k) and k.rsplit("/", 1)[1] not in have)
        if not new:
            return report
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            raw = dict(zip(new, pool.map(self.bucket.get_bytes, new), strict=True))
        records = []
        for key, data in raw.items():
            try:
                records.append((Record.from_json(json.loads(data)), data))
            except (ValueError, KeyError, TypeError) as exc:
                report.problems.append(
                    f"{self.bucket.where(key)} is not a record this workbench reads: {exc}"
                )
        # what applying them reads, fetched together rather than one by one: the manifests, then
        # the Parquet objects (series, bulk row sets) they and the records point at
        manifests = {
            f"manifests/{ref['storage_key']}" for record, _ in records for ref in record.manifests.values()
        }
        report.downloaded += self._prefetch(manifests)
        parquet = {ref for record, _ in records for ref in _parquet_refs(self.layout, record)}
        report.downloaded += self._prefetch({_content_key(k) for k in parquet})
        with archive_lock(self.root, job="pull", wait_s=lock_wait_s, snapshot=False):
            with open_catalog(self.root, create=True) as con:
                store = object_store(self.layout)
                replayed = ReplayReport(last_seq=current_seq(con))
                for record, data in sorted(records, key=lambda pair: record_order(pair[0])):
                    apply_record(con, self.layout, record, store, replayed)
                    durable_write_bytes(self.layout.records / record.file_name, data, self.layout.tmp)
                report.problems += replayed.problems
            self._remember([(f"records/{r.file_name}", "") for r, _ in records])
            if records:
                _drop_stale_snapshots(self.layout, min(r.seq for r, _ in records))
        report.records = len(records)
        return report

    def _prefetch(self, keys: set[str]) -> int:
        missing = sorted(k for k in keys if not (self.root / k).exists())
        fetched = self.bucket.get_many(missing, self.root, self.layout.tmp, missing_ok=True)
        self._remember([(k, "") for k in fetched])
        return len(fetched)

    # ------------------------------------------------------------ checks

    def holds_object(self, storage_key: str) -> bool:
        """Whether the bucket holds this stored object (file or pack) with this cache's exact bytes."""
        key = _content_key(storage_key)
        if key not in self._held:
            local = self.root / key
            ondemand.fetch_missing(local)  # a dropped copy: the caller re-hashed the bucket's bytes
            self._held[key] = local.exists() and self.bucket.holds(key, local)
        return self._held[key]

    def bucket_problems(self, *, read_data: bool) -> tuple[int, list[str]]:
        """Files of this cache the bucket lacks (or, with `read_data`, holds with other bytes)."""
        problems: list[str] = []
        checked = 0
        with open_catalog(self.root, read_only=True) as con:
            wanted: dict[str, int | None] = {
                _content_key(key): (None if is_pack_key(key) else int(size))
                for key, size in con.execute("SELECT storage_key, stored_bytes FROM wb_objects").fetchall()
            }
            for (key,) in con.execute("SELECT storage_key FROM wb_manifests").fetchall():
                wanted[f"manifests/{key}"] = None
        everything: dict[str, Any] = {}
        for folder in (*CONTENT_FOLDERS, "records"):
            listed = self.bucket.listing(folder)
            everything.update(listed)
            for key, path in _files(self.root, folder):
                checked += 1
                remote = listed.get(key)
                if remote is None:
                    problems.append(
                        f"{self.bucket.where(key)} is missing (not uploaded yet: any writing command pushes it)"
                    )
                elif remote.size != path.stat().st_size:
                    problems.append(
                        f"{self.bucket.where(key)} has {remote.size} bytes, this cache {path.stat().st_size}"
                    )
                elif read_data and not self.bucket.holds(key, path):
                    problems.append(f"{self.bucket.where(key)} holds other bytes than this cache")
        for key, size in sorted(wanted.items()):
            if (self.root / key).exists():
                continue  # compared above
            checked += 1
            remote = everything.get(key)
            if remote is None:
                problems.append(f"{self.bucket.where(key)} is missing (the catalog lists it)")
            elif size is not None and remote.size != size:
                problems.append(f"{self.bucket.where(key)} has {remote.size} bytes, the catalog says {size}")
        return checked, problems


class BackgroundPush:
    """One thread that pushes whenever asked (requests while it pushes are coalesced into one more).

    A failure is kept, not raised: the session's final push uploads what is left (or fails, then).
    """

    def __init__(self, remote: RemoteArchive) -> None:
        self.remote = remote
        self.error: BaseException | None = None
        self._wanted = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="workbench-s3-push", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def close(self) -> None:
        self._stop = True
        self._wanted.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stop:
                return
            try:
                self.remote.push()
            except Exception as exc:  # noqa: BLE001 - kept for the final push to report
                self.error = exc


def _content_key(storage_key: str) -> str:
    """The bucket key (relative to the prefix) of an object's storage key."""
    if is_pack_key(storage_key):
        sha = parse_pack_key(storage_key).pack_sha256
        return f"packs/{sha[:2]}/{sha}.pack"
    return f"objects/{storage_key}"


def _parquet_refs(layout: ArchiveLayout, record: Record) -> Iterator[str]:
    """Storage keys of the Parquet objects a record's row sets and its (local) manifests point at."""
    for rowset in record.rowsets:
        if rowset.parquet:
            yield str(rowset.parquet["storage_key"])
    for ref in record.manifests.values():
        path = layout.manifests / ref["storage_key"]
        if not path.exists() or str(ref["storage_key"]).endswith(".zst"):
            continue  # read on demand while applying
        try:
            series = json.loads(path.read_bytes()).get("series")
        except ValueError:
            continue
        if series:
            yield str(series["storage_key"])


def _files(root: Path, folder: str) -> Iterator[tuple[str, Path]]:
    """(key relative to the archive, path) of every file under `folder`."""
    base = root / folder
    if not base.is_dir():
        return
    stack = [base]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    path = Path(entry.path)
                    yield path.relative_to(root).as_posix(), path


def _drop_stale_snapshots(layout: ArchiveLayout, lowest_seq: int) -> None:
    """A snapshot holds the records up to its seq; one taken before a pulled record of a lower or
    equal seq lacks that record, so `repair` must not start from it."""
    for snapshot in list_snapshots(layout.root):
        if snapshot.seq >= lowest_seq:
            snapshot.path.unlink(missing_ok=True)


# ---------------------------------------------------------------- sessions


@contextmanager
def remote_session(uri: str, *, writes: bool, lock_wait_s: float = 0.0) -> Iterator[RemoteArchive]:
    """Pull, run the block on the cache folder, push (writing commands); see the module docstring."""
    settings = _settings()
    remote = RemoteArchive(uri, endpoint_url=settings.endpoint_url, cache_dir=settings.cache_dir)
    remote.bucket.check()
    if writes:
        remote.push()  # what an interrupted job left: content first, records last
    ondemand.register(remote.root, remote)
    failed = False
    try:
        try:
            remote.pull(lock_wait_s=lock_wait_s)
        except ArchiveBusyError:
            if writes:
                raise
            # a reader beside a running job on the same cache reads the cache as it is
        push_writer(remote.writer)
        _BOUND[remote.root] = remote
        if writes:
            remote._pusher = BackgroundPush(remote)
        try:
            yield remote
        finally:
            _BOUND.pop(remote.root, None)
            pop_writer()
            if remote._pusher is not None:
                remote._pusher.close()
                remote._pusher = None
    except BaseException:
        failed = True
        raise
    finally:
        ondemand.unregister(remote.root)
        if writes:
            try:
                remote.push()
                if not settings.keep_local:
                    remote.drop_uploaded()
            except RemoteArchiveError:
                if not failed:
                    raise


def accepts_s3(*, writes: bool) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let a function whose `archive` argument is a folder also take ``s3://BUCKET/PREFIX``.

    The function runs unchanged on this machine's cache folder, inside a `remote_session`.
    """

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            target = bound.arguments.get("archive")
            if not is_s3_uri(target):
                return fn(*args, **kwargs)
            wait = float(bound.arguments.get("lock_wait_s") or 0.0)
            with remote_session(str(target), writes=writes, lock_wait_s=wait) as remote:
                bound.arguments["archive"] = remote.root
                return fn(*bound.args, **bound.kwargs)

        return inner

    return wrap
