"""Registry path strings (Windows, WSL, POSIX, relative) → paths on this machine.

The registry stores paths in whatever OS style its writer used (spec §2.8): `/mnt/f/Dev/x`,
`F:\\Dev\\x`, `f:\\Dev\\x`, `F:/Dev/x`, relative paths. A resolver turns such a string into an
existing local path, or None; it never raises for an unresolvable path, so one odd row cannot stop
an archive job. `normalise_path_key` gives one spelling per directory for de-duplication.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from workbench.errors import ConfigError

#: Directory names that sit directly under an RD-Agent repo root (spec §1); a path containing one
#: of them can be re-rooted onto another copy of the installation.
ANCHORS: tuple[str, ...] = ("git_ignore_folder", "log", "RDagentDB")

_DRIVE = re.compile(r"^([A-Za-z]):(?:/|$)")
_WSL = re.compile(r"^/mnt/([A-Za-z])(?:/|$)")


@dataclass(frozen=True)
class _Parsed:
    """A raw path split into its style, drive letter (lower case) and '/'-separated remainder."""

    style: str  # "drive" (X:/...), "posix" (/...), "unc" (//host/...), "relative"
    drive: str | None
    rest: str  # without leading slash for drive/posix/unc; as given for relative


def _parse(raw: str) -> _Parsed:
    """Split a raw path string; backslashes become slashes and `/mnt/x/` is read as drive x."""
    text = raw.strip().strip('"').strip("'").replace("\\", "/")
    text = _strip_windows_prefixes(text)
    if text.startswith("//"):
        return _Parsed("unc", None, _squeeze(text[2:]))
    match = _DRIVE.match(text) or _WSL.match(text)
    if match:
        return _Parsed("drive", match.group(1).lower(), _squeeze(text[match.end() :]))
    if text.startswith("/"):
        return _Parsed("posix", None, _squeeze(text))
    return _Parsed("relative", None, _squeeze(text))


_WSL_SHARE = re.compile(r"^//(?:wsl\$|wsl\.localhost)/[^/]+(?=/|$)", re.IGNORECASE)


def _strip_windows_prefixes(text: str) -> str:
    """`//?/F:/x` → `F:/x`, `//?/UNC/host/share` → `//host/share`, `//wsl$/Ubuntu/home` → `/home`."""
    if text[:4] in ("//?/", "//./"):
        text = text[4:]
        if text[:4].upper() == "UNC/":
            text = "//" + text[4:]
    match = _WSL_SHARE.match(text)
    if match:  # a WSL distribution's root seen from Windows: the POSIX path inside it
        text = text[match.end() :] or "/"
    return text


def _squeeze(rest: str) -> str:
    """Collapse repeated slashes, drop `.` segments and leading/trailing slashes."""
    parts = [p for p in rest.split("/") if p not in ("", ".")]
    return "/".join(parts)


def normalise_path_key(raw: str) -> str:
    """One spelling per directory: `F:\\Dev\\x`, `f:/Dev/x/`, `/mnt/f/Dev/x` all give `f:/Dev/x`.

    Drive letters are lower-cased, separators become `/`, `.`/`..` segments are folded lexically,
    trailing slashes dropped. The rest keeps its case (POSIX paths are case-sensitive).
    """
    parsed = _parse(raw)
    rest = posixpath.normpath("/" + parsed.rest).lstrip("/") if parsed.rest else ""
    if parsed.style == "drive":
        return f"{parsed.drive}:/{rest}".rstrip("/") if rest else f"{parsed.drive}:/"
    if parsed.style == "unc":
        return f"//{rest}"
    if parsed.style == "posix":
        return "/" + rest
    return posixpath.normpath(parsed.rest) if parsed.rest else "."


def parse_path_map(text: str) -> tuple[str, str]:
    """Parse one `--path-map FROM=TO` option (split at the first `=`)."""
    source, sep, target = text.partition("=")
    if not sep or not source.strip() or not target.strip():
        raise ConfigError(
            f"--path-map {text!r} is not FROM=TO; write e.g. "
            "--path-map 'F:\\Dev\\RD-Agent-main=/data/rdagent' (FROM as stored in the registry, TO on this machine)"
        )
    return source.strip(), target.strip()


def _segments(parsed: _Parsed) -> list[str]:
    return [p for p in parsed.rest.split("/") if p]


def _join(base: Path, segments: Sequence[str]) -> Path:
    return base.joinpath(*segments) if segments else base


class PathResolver:
    """Turn registry path strings into existing local paths; first existing candidate wins.

    Order: explicit `(FROM, TO)` rules (prefix match on normalised keys, most specific rule
    first, case-insensitive for Windows paths), the path as written
    (if it is in this machine's style), automatic drive conversion (`X:\\...` ↔ `/mnt/x/...`),
    re-rooting at an anchor directory (`git_ignore_folder`, `log`, `RDagentDB`) under
    `rdagent_root`, and for relative paths `rdagent_root / path`.
    """

    def __init__(self, rules: Sequence[tuple[str, str]] = (), *, rdagent_root: Path | None = None) -> None:
        self.rules: tuple[tuple[str, str], ...] = tuple((str(a), str(b)) for a, b in rules)
        self.rdagent_root = Path(rdagent_root) if rdagent_root is not None else None
        self._rule_keys = [(normalise_path_key(a), Path(b).expanduser()) for a, b in self.rules]

    def candidates(self, raw: str | None) -> list[tuple[str, Path]]:
        """Every local path tried for `raw`, in order, with a short label saying why."""
        if raw is None or not str(raw).strip():
            return []
        parsed = _parse(str(raw))
        out: list[tuple[str, Path]] = []
        out.extend(self._from_rules(str(raw)))
        out.extend(self._as_written(parsed))
        out.extend(self._drive_conversion(parsed))
        out.extend(self._re_rooted(parsed))
        seen: set[str] = set()
        unique = []
        for label, path in out:
            if str(path) not in seen:
                seen.add(str(path))
                unique.append((label, path))
        return unique

    def resolve(self, raw: str | None) -> Path | None:
        """The first candidate that exists on this machine, else None (never raises)."""
        for _label, path in self.candidates(raw):
            try:
                if path.exists():
                    return path
            except OSError:
                continue
        return None

    def explain(self, raw: str | None) -> str:
        """Human-readable account of what was tried for `raw` and what was found."""
        if raw is None or not str(raw).strip():
            return "empty path: nothing to resolve"
        lines = [f"resolving {raw!r}:"]
        found = None
        for label, path in self.candidates(raw):
            exists = _exists(path)
            lines.append(f"  {label}: {path} -> {'exists' if exists else 'missing'}")
            if exists and found is None:
                found = path
        if len(lines) == 1:
            lines.append("  no candidate (relative path and no RD-Agent root given?)")
        lines.append(f"  result: {found}" if found else "  result: not found (add --path-map FROM=TO)")
        return "\n".join(lines)

    def _from_rules(self, raw: str) -> list[tuple[str, Path]]:
        """Rules whose FROM is a prefix of `raw`, the longest (most specific) first.

        Drive-letter and UNC paths are Windows paths: their prefixes match without regard to case.
        """
        key = normalise_path_key(raw)
        fold = key[:2] == "//" or bool(_DRIVE.match(key))
        matches = []
        for (source, target), (source_key, target_path) in zip(self.rules, self._rule_keys, strict=True):
            suffix = _strip_prefix(key, source_key, fold=fold)
            if suffix is not None:
                matches.append(
                    (
                        len(source_key),
                        f"--path-map {source}={target}",
                        _join(target_path, suffix.split("/") if suffix else []),
                    )
                )
        matches.sort(key=lambda m: -m[0])  # stable: equal lengths keep the command-line order
        return [(label, path) for _length, label, path in matches]

    def _as_written(self, parsed: _Parsed) -> list[tuple[str, Path]]:
        if os.name == "nt":
            if parsed.style == "drive" and parsed.drive is not None:
                return [("as written", Path(f"{parsed.drive.upper()}:\\", *_segments(parsed)))]
            if parsed.style == "unc":
                return [("as written", Path(str(PureWindowsPath("//" + parsed.rest))))]
            return []
        if parsed.style == "posix":
            return [("as written", Path("/" + parsed.rest))]
        return []

    def _drive_conversion(self, parsed: _Parsed) -> list[tuple[str, Path]]:
        if parsed.style != "drive" or parsed.drive is None:
            return []
        if os.name == "nt":
            return []  # the as-written candidate already is the drive path
        return [("drive letter as WSL mount", Path(f"/mnt/{parsed.drive}", *_segments(parsed)))]

    def _re_rooted(self, parsed: _Parsed) -> list[tuple[str, Path]]:
        if self.rdagent_root is None:
            return []
        segments = _segments(parsed)
        if parsed.style == "relative":
            clean = [s for s in PurePosixPath(posixpath.normpath(parsed.rest or ".")).parts if s != "."]
            if ".." not in clean:
                out = [("relative to the RD-Agent root", _join(self.rdagent_root, clean))]
            else:
                out = []
        else:
            out = []
        for index, segment in enumerate(segments):
            if segment in ANCHORS:
                suffix = segments[index:]
                if ".." in suffix:
                    continue
                out.append(
                    (f"re-rooted at {segment!r} under the RD-Agent root", _join(self.rdagent_root, suffix))
                )
        return out


def _strip_prefix(key: str, prefix: str, *, fold: bool = False) -> str | None:
    """`key` minus `prefix` on a segment boundary ('' for an exact match), else None.

    With `fold`, the comparison ignores case; the suffix keeps the key's own spelling.
    """
    compare_key, compare_prefix = (key.casefold(), prefix.casefold()) if fold else (key, prefix)
    if compare_key == compare_prefix:
        return ""
    base = compare_prefix.rstrip("/")
    if compare_key.startswith(base + "/") and len(key.casefold()) == len(key):
        return key[len(base) + 1 :]
    return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False
