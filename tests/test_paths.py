"""Path resolution of every spelling the registry uses (spec §2.8), and the installation layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workbench.errors import ConfigError, RegistryError
from workbench.rdagent.installation import Installation
from workbench.rdagent.paths import PathResolver, normalise_path_key, parse_path_map

WS = "462527f0ab3d4ccaa48fd8aad72284dc"
pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX path expectations")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A tiny RD-Agent root with one workspace, one log dir and a registry file."""
    base = tmp_path / "RD-Agent-main"
    (base / "git_ignore_folder" / "RD-Agent_workspace" / WS).mkdir(parents=True)
    (base / "log" / "2026-01-06_06-00-53-321254").mkdir(parents=True)
    (base / "RDagentDB").mkdir()
    (base / "RDagentDB" / "registry.sqlite").write_bytes(b"")
    return base


@pytest.mark.parametrize(
    "raw",
    [
        f"F:\\Dev\\RD-Agent-main\\git_ignore_folder\\RD-Agent_workspace\\{WS}",
        f"f:\\Dev\\RD-Agent-main\\git_ignore_folder\\RD-Agent_workspace\\{WS}",
        f"F:/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/{WS}",
        f"/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/{WS}",
        f"/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/{WS}/",
        f"/home/someone/RD-Agent-main/git_ignore_folder//RD-Agent_workspace/./{WS}",
        f"git_ignore_folder/RD-Agent_workspace/{WS}",
        f"./git_ignore_folder\\RD-Agent_workspace\\{WS}",
    ],
)
def test_every_spelling_resolves_by_anchor_under_the_root(root: Path, raw: str):
    resolver = PathResolver(rdagent_root=root)
    assert resolver.resolve(raw) == root / "git_ignore_folder" / "RD-Agent_workspace" / WS


def test_log_and_registry_anchors(root: Path):
    resolver = PathResolver(rdagent_root=root)
    assert resolver.resolve("F:\\Dev\\RD-Agent-main\\log\\2026-01-06_06-00-53-321254") == (
        root / "log" / "2026-01-06_06-00-53-321254"
    )
    assert resolver.resolve("/mnt/f/Dev/RD-Agent-main/log") == root / "log"  # HEAD's log_dir = the log root
    assert resolver.resolve("f:/x/RDagentDB/registry.sqlite") == root / "RDagentDB" / "registry.sqlite"


def test_the_first_anchor_wins_when_the_path_has_two(root: Path):
    # 'log' appears in the workspace id position too; the longest suffix under the root is tried first.
    nested = root / "git_ignore_folder" / "RD-Agent_workspace" / WS / "log"
    nested.mkdir()
    resolver = PathResolver(rdagent_root=root)
    assert resolver.resolve(f"/old/git_ignore_folder/RD-Agent_workspace/{WS}/log") == nested


def test_posix_path_that_exists_is_used_as_written(tmp_path: Path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    assert PathResolver().resolve(str(target)) == target
    assert PathResolver().resolve(str(target) + "/") == target


def test_path_map_rules_come_first_and_match_every_spelling(tmp_path: Path):
    data = tmp_path / "data" / "rdagent"
    (data / "git_ignore_folder" / "RD-Agent_workspace" / WS).mkdir(parents=True)
    resolver = PathResolver([parse_path_map("F:\\Dev\\RD-Agent-main=" + str(data))])
    expected = data / "git_ignore_folder" / "RD-Agent_workspace" / WS
    for raw in (
        f"F:\\Dev\\RD-Agent-main\\git_ignore_folder\\RD-Agent_workspace\\{WS}",
        f"f:/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/{WS}",
        f"/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/{WS}",
    ):
        assert resolver.resolve(raw) == expected, raw
    assert resolver.resolve("/mnt/f/Dev/RD-Agent-main") == data  # exact prefix
    assert resolver.resolve("/mnt/f/Dev/RD-Agent-main-copy/x") is None  # not a segment boundary


def test_rule_wins_over_anchor_rerooting(tmp_path: Path, root: Path):
    mapped = tmp_path / "mapped"
    (mapped / "git_ignore_folder" / "RD-Agent_workspace" / WS).mkdir(parents=True)
    resolver = PathResolver([("/mnt/f/Dev/RD-Agent-main", str(mapped))], rdagent_root=root)
    raw = f"/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/{WS}"
    assert resolver.resolve(raw) == mapped / "git_ignore_folder" / "RD-Agent_workspace" / WS
    # a rule whose target lacks the path falls through to the next candidates
    empty = PathResolver([("/mnt/f/Dev/RD-Agent-main", str(tmp_path / "nothing"))], rdagent_root=root)
    assert empty.resolve(raw) == root / "git_ignore_folder" / "RD-Agent_workspace" / WS


def test_unresolvable_paths_give_none_and_explain_says_why(root: Path):
    resolver = PathResolver(rdagent_root=root)
    for raw in (
        None,
        "",
        "   ",
        "Z:\\nowhere\\at\\all",
        "/nonexistent/place",
        "relative/missing",
        "../escape",
    ):
        assert resolver.resolve(raw) is None
    text = resolver.explain("F:\\Dev\\RD-Agent-main\\git_ignore_folder\\RD-Agent_workspace\\gone")
    assert "/mnt/f/Dev/RD-Agent-main/git_ignore_folder/RD-Agent_workspace/gone -> missing" in text
    assert "re-rooted at 'git_ignore_folder'" in text and "result: not found" in text
    found = resolver.explain(f"F:\\x\\git_ignore_folder\\RD-Agent_workspace\\{WS}")
    assert f"result: {root / 'git_ignore_folder' / 'RD-Agent_workspace' / WS}" in found
    assert "no candidate" in PathResolver().explain("relative/only")


def test_relative_without_root_is_none():
    assert PathResolver().resolve("git_ignore_folder/x") is None


def test_normalise_path_key_unifies_spellings():
    keys = {
        normalise_path_key(raw)
        for raw in (
            "F:\\Dev\\RD-Agent-main\\log",
            "f:\\Dev\\RD-Agent-main\\log\\",
            "F:/Dev/RD-Agent-main/log",
            "/mnt/f/Dev/RD-Agent-main/log",
            "/mnt/F/Dev/RD-Agent-main/./log/",
            "F:\\Dev\\RD-Agent-main\\git_ignore_folder\\..\\log",
        )
    }
    assert keys == {"f:/Dev/RD-Agent-main/log"}
    assert normalise_path_key("/home/u/x//y/") == "/home/u/x/y"
    assert normalise_path_key("/home/u/X") != normalise_path_key("/home/u/x")  # case kept outside the drive
    assert normalise_path_key("F:\\") == normalise_path_key("/mnt/f") == "f:/"
    assert normalise_path_key("log\\a") == "log/a"


@pytest.mark.parametrize("bad", ["no-equals-sign", "=/to", "F:\\from=", "  =  "])
def test_parse_path_map_rejects_bad_syntax(bad: str):
    with pytest.raises(ConfigError, match="FROM=TO"):
        parse_path_map(bad)


def test_parse_path_map_splits_at_the_first_equals():
    assert parse_path_map(" F:\\Dev\\RD-Agent-main = /data/rd=agent ") == (
        "F:\\Dev\\RD-Agent-main",
        "/data/rd=agent",
    )


# --------------------------------------------------------------------------- Installation


def test_installation_layout_and_resolver(root: Path):
    inst = Installation.open(root, path_map=["F:\\Dev\\RD-Agent-main=" + str(root)])
    assert inst.root == root.resolve()
    assert inst.registry_path == root.resolve() / "RDagentDB" / "registry.sqlite"
    assert inst.workspace_root == root.resolve() / "git_ignore_folder" / "RD-Agent_workspace"
    assert inst.log_root == root.resolve() / "log"
    assert inst.resolver.rdagent_root == root.resolve()
    assert inst.resolver.rules == (("F:\\Dev\\RD-Agent-main", str(root)),)
    assert inst.resolver.resolve(f"F:\\Dev\\RD-Agent-main\\git_ignore_folder\\RD-Agent_workspace\\{WS}") == (
        root / "git_ignore_folder" / "RD-Agent_workspace" / WS
    )


def test_installation_errors(tmp_path: Path, root: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        Installation.open(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not a directory"):
        Installation.open(root / "RDagentDB" / "registry.sqlite")
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(RegistryError, match="--registry"):
        Installation.open(bare)
    other = tmp_path / "copy.sqlite"
    other.write_bytes(b"")
    assert Installation.open(bare, registry=other).registry_path == other.resolve()
    with pytest.raises(ConfigError, match="FROM=TO"):
        Installation.open(root, path_map=["nonsense"])


def test_rules_match_windows_paths_in_any_case_and_keep_the_suffix_spelling(tmp_path: Path):
    target = tmp_path / "data" / "Workspace" / WS
    target.mkdir(parents=True)
    resolver = PathResolver([("F:\\Dev\\RD-Agent-main", str(tmp_path / "data"))])
    assert resolver.resolve(f"f:\\dev\\rd-agent-main\\Workspace\\{WS}") == target
    assert (
        resolver.resolve(f"\\\\?\\F:\\DEV\\RD-Agent-Main\\Workspace\\{WS}") == target
    )  # extended-length form
    unc = PathResolver([("\\\\server\\share", str(tmp_path / "data"))])
    assert unc.resolve(f"\\\\SERVER\\Share\\Workspace\\{WS}") == target
    assert unc.resolve(f"\\\\?\\UNC\\server\\share\\Workspace\\{WS}") == target
    posix = PathResolver([("/srv/RD", str(tmp_path / "data"))])
    assert posix.resolve(f"/srv/rd/Workspace/{WS}") is None  # POSIX paths stay case-sensitive


def test_the_most_specific_rule_wins_whatever_the_order(tmp_path: Path):
    broad, narrow = tmp_path / "b", tmp_path / "a"
    (broad / "RD-Agent-main" / "x").mkdir(parents=True)
    (narrow / "x").mkdir(parents=True)
    resolver = PathResolver([("F:\\Dev", str(broad)), ("F:\\Dev\\RD-Agent-main", str(narrow))])
    assert resolver.resolve("F:\\Dev\\RD-Agent-main\\x") == narrow / "x"
    assert resolver.candidates("F:\\Dev\\RD-Agent-main\\x")[1][1] == broad / "RD-Agent-main" / "x"


def test_wsl_share_paths_are_the_distribution_posix_paths(tmp_path: Path):
    folder = tmp_path / "ws"
    folder.mkdir()
    assert PathResolver().resolve(f"\\\\wsl$\\Ubuntu{folder}".replace("/", "\\")) == folder
    assert PathResolver().resolve(f"\\\\wsl.localhost\\Ubuntu-22.04{folder}".replace("/", "\\")) == folder
