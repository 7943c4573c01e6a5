"""lensbox._io: atomic files, strict JSON and the one artifact format."""

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lensbox._errors import ArtifactError
from lensbox._io import atomic_file, read_artifact, read_json, sha256_file, write_artifact, write_json

FMT = "lensbox.test_thing"


def _write(target: Path, *, scale: float = 1.0, overwrite: bool = False, fmt: str = FMT) -> Path:
    return write_artifact(
        target,
        format=fmt,
        format_version=2,
        meta_file="thing.json",
        meta={"note": "hello", "scale": scale},
        weights={"a.safetensors": {"w": torch.arange(6.0).reshape(2, 3) * scale}, "b.safetensors": {"v": torch.ones(4)}},
        overwrite=overwrite,
        what="the test thing",
    )


def _read(path: Path, versions=(2,)):
    return read_artifact(path, format=FMT, meta_file="thing.json", versions=versions, what="the test thing")


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    data = os.urandom(3 << 20)
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_round_trip_header_and_hashes(tmp_path: Path) -> None:
    out = _write(tmp_path / "thing")
    assert sorted(p.name for p in out.iterdir()) == ["a.safetensors", "b.safetensors", "thing.json"]
    raw = json.loads((out / "thing.json").read_text())
    assert raw["format"] == FMT and raw["format_version"] == 2 and raw["note"] == "hello"
    assert set(raw) == {"format", "format_version", "lensbox_version", "created", "files", "note", "scale"}
    assert raw["files"] == {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in ("a.safetensors", "b.safetensors")}
    meta, weights = _read(out)
    assert meta["note"] == "hello"
    assert torch.equal(weights["a.safetensors"]["w"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(weights["b.safetensors"]["v"], load_file(str(out / "b.safetensors"))["v"])
    assert not [p for p in tmp_path.iterdir() if p.name != "thing"]  # no temporary folders left


def test_refuses_existing_artifact_unless_overwrite(tmp_path: Path) -> None:
    out = _write(tmp_path / "thing", scale=1.0)
    with pytest.raises(ArtifactError, match="overwrite=True"):
        _write(out, scale=2.0)
    assert _read(out)[0]["scale"] == 1.0
    _write(out, scale=2.0, overwrite=True)
    meta, weights = _read(out)
    assert meta["scale"] == 2.0 and float(weights["a.safetensors"]["w"][1, 2]) == 10.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]


def test_never_deletes_a_folder_holding_user_files(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    for overwrite in (False, True):
        with pytest.raises(ArtifactError, match="not a 'lensbox.test_thing' artifact"):
            _write(folder, overwrite=overwrite)
    assert (folder / "thesis.tex").read_text() == "years of work"
    # an artifact folder the user added a file to is not deleted either
    out = _write(tmp_path / "thing")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="never deletes"):
        _write(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_refuses_another_artifact_format(tmp_path: Path) -> None:
    out = _write(tmp_path / "thing", fmt="lensbox.other")
    with pytest.raises(ArtifactError, match="not a 'lensbox.test_thing' artifact"):
        _write(out, overwrite=True)
    assert json.loads((out / "thing.json").read_text())["format"] == "lensbox.other"
    with pytest.raises(ArtifactError, match="another kind of artifact") as info:
        _read(out)
    assert "'lensbox.other'" in str(info.value)


def test_target_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="not a folder"):
        _write(tmp_path / "f", overwrite=True)
    assert (tmp_path / "f").read_text() == "x"


def test_empty_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = _write(tmp_path / "empty")
    assert _read(out)[0]["note"] == "hello"


def test_flipped_byte_is_refused(tmp_path: Path) -> None:
    out = _write(tmp_path / "thing")
    data = bytearray((out / "a.safetensors").read_bytes())
    data[-1] ^= 0x01
    (out / "a.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="a.safetensors is not the file that was saved") as info:
        _read(out)
    assert hashlib.sha256(bytes(data)).hexdigest() in str(info.value)


def test_missing_file_and_bad_version(tmp_path: Path) -> None:
    out = _write(tmp_path / "thing")
    with pytest.raises(ArtifactError, match="format version") as info:
        _read(out, versions=(1,))
    assert "[1]" in str(info.value) and '"format_version": 2' in str(info.value)
    (out / "b.safetensors").unlink()
    with pytest.raises(ArtifactError, match="the file b.safetensors is missing"):
        _read(out)


def test_non_finite_tensor_is_refused(tmp_path: Path) -> None:
    out = write_artifact(
        tmp_path / "thing", format=FMT, format_version=2, meta_file="thing.json", meta={},
        weights={"a.safetensors": {"w": torch.tensor([1.0, float("nan"), 3.0])}}, overwrite=False, what="the test thing",
    )
    with pytest.raises(ArtifactError, match="tensor 'w' in a.safetensors holds NaN") as info:
        _read(out)
    assert "1 non-finite of 3" in str(info.value)


@pytest.mark.parametrize("name", ["../evil.safetensors", "/etc/passwd", "sub/x.safetensors", "..", ""])
def test_path_traversal_refused(tmp_path: Path, name: str) -> None:
    out = _write(tmp_path / "thing")
    meta = json.loads((out / "thing.json").read_text())
    meta["files"] = {name: "0" * 64}
    (out / "thing.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="not a plain name") as info:
        _read(out)
    assert repr(name) in str(info.value)
    with pytest.raises(ArtifactError, match="not a plain name"):
        write_artifact(
            tmp_path / "new", format=FMT, format_version=2, meta_file="thing.json", meta={},
            weights={name: {"w": torch.ones(1)}}, overwrite=False, what="the test thing",
        )
    assert not (tmp_path / "new").exists()


def test_default_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = _write(tmp_path / "thing")
        plain = tmp_path / "plain.json"
        write_json(plain, {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for p in (*out.iterdir(), plain):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_atomic_file_keyboard_interrupt_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target, suffix=".csv") as tmp:
            tmp.write_text("half of the new")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with atomic_file(target, suffix=".csv") as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_write_json_strict(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    write_json(p, {"b": 1, "a": [1.5, None]})
    assert p.read_text().index('"a"') < p.read_text().index('"b"')  # sorted keys
    assert read_json(p, what="the thing") == {"a": [1.5, None], "b": 1}
    with pytest.raises(ArtifactError, match="not finite") as info:
        write_json(p, {"a": {"b": [1.0, float("inf")]}})
    assert "$.a.b[1]" in str(info.value)
    assert read_json(p, what="the thing")["b"] == 1  # unchanged


def test_read_json_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="missing its file nope.json"):
        read_json(tmp_path / "nope.json", what="the probe")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json", what="the probe")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="does not hold a JSON object") as info:
        read_json(tmp_path / "list.json", what="the probe")
    assert "a JSON list" in str(info.value)
    (tmp_path / "nan.json").write_text('{"a": NaN}')
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_json(tmp_path / "nan.json", what="the probe")
