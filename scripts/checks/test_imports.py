"""Tests of imports.py, and the check itself on this repository (run by scripts/test.sh)."""

from pathlib import Path

import imports


def crate(tmp_path, files):
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "x"\n')
    for name, text in files.items():
        p = tmp_path / "src" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_siblings_that_import_each_other_are_found(tmp_path):
    root = crate(tmp_path, {
        "lib.rs": "mod a;\nmod b;\nmod c;\n",
        "a.rs": "use crate::b::B;\npub struct A;\n",
        "b.rs": "pub struct B(crate::c::C);\n",
        "c.rs": "use super::a::A;\npub struct C;\n",
    })
    problems, _ = imports.check(root)
    assert problems == ["files import each other: src/a.rs <-> src/b.rs <-> src/c.rs"]


def test_a_module_and_its_submodules_are_one_unit(tmp_path):
    root = crate(tmp_path, {
        "lib.rs": "mod m;\npub use m::Thing;\n",
        "m/mod.rs": "mod inner;\npub use inner::Thing;\npub struct Shared;\n",
        "m/inner.rs": "use super::Shared;\npub struct Thing(Shared);\n",
        "n.rs": "",
    })
    assert imports.check(root)[0] == []


def test_long_files_are_reported(tmp_path):
    root = crate(tmp_path, {"lib.rs": "\n" * (imports.MAX_LINES + 1)})
    assert imports.check(root)[0] == [f"src/lib.rs: {imports.MAX_LINES + 1} lines (limit {imports.MAX_LINES})"]


def test_this_repository_has_no_mutual_imports_and_no_long_files():
    problems, edges = imports.check(Path(__file__).resolve().parents[2])
    assert len(edges) > 100, "the checker found the sources"
    assert problems == []
