"""gradguard.atomic: reports and baselines are replaced whole (temporary file + rename), never half-written, and a
file the user keeps as a symbolic link stays a link (the file it points to gets the new content)."""
from __future__ import annotations

import os

import pytest

from gradguard.atomic import write_json, write_text


def test_replaces_whole_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert target.read_text() == '{\n  "a": 2\n}\n'
    assert os.listdir(target.parent) == ["report.json"]


def test_a_symlinked_baseline_stays_a_link(tmp_path):
    real = tmp_path / "store" / "baseline.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "baseline.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text() == "new"


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "baseline.json"
    target.write_text("old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["baseline.json"]  # the temporary file was removed
