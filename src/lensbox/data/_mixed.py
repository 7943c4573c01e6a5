"""The default training text: a mix of domains and languages from the built-in corpora.

A tuned lens trained on one English book learns English-specific maps and is confidently
wrong in other languages (``bench/tuned_lens_domains.py``). `default_training_texts`
interleaves blocks of English prose and drama, technical English, Python code and the
Debian handbook in several languages, so that any token budget reads every domain in turn
(the training stream reads its windows in order). The first blocks of each corpus, in its
sorted file order, are used; the result is the same on every machine for the pinned
corpora.
"""

import hashlib
from typing import Any, Dict, List, Sequence, Tuple

#: (corpus, what it stands for) in the default mix, in the order blocks are interleaved.
DEFAULT_MIX: Tuple[Tuple[str, str], ...] = (
    ("botchan", "English prose"),
    ("django-code", "Python code"),
    ("debian-handbook:fr", "French"),
    ("django-docs", "technical English"),
    ("debian-handbook:zh-CN", "Chinese"),
    ("debian-handbook:de", "German"),
    ("shakespeare", "English drama"),
    ("debian-handbook:ja", "Japanese"),
    ("debian-handbook:ru", "Russian"),
    ("debian-handbook:es", "Spanish"),
)
#: Characters taken from each corpus, and the size of one interleaved block (small, so that even
#: a budget of a few thousand tokens reads every corpus of the mix).
CHARS_PER_CORPUS = 120_000
BLOCK_CHARS = 1_000


def _blocks(text: str, size: int) -> List[str]:
    """``text`` cut into blocks of about ``size`` characters at line breaks."""
    out, cur, n = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        n += len(line)
        if n >= size:
            out.append("".join(cur))
            cur, n = [], 0
    if cur:
        out.append("".join(cur))
    return out


def mix_texts(named: Sequence[Tuple[str, str]], *, block_chars: int = BLOCK_CHARS) -> List[str]:
    """Interleave ``(name, text)`` pairs block by block (round robin), so every prefix holds every text."""
    cut = [_blocks(text, block_chars) for _, text in named]
    out: List[str] = []
    for i in range(max((len(b) for b in cut), default=0)):
        out.extend(b[i] for b in cut if i < len(b))
    return out


def default_training_texts(
    *, mix: Sequence[Tuple[str, str]] = DEFAULT_MIX, chars_per_corpus: int = CHARS_PER_CORPUS, progress: bool = True
) -> Tuple[List[str], Dict[str, Any]]:
    """The default training text (fetched once, like every built-in corpus) and its description for a lens.

    Returns ``(texts, description)``: the interleaved blocks, and ``{"name": "lensbox default mix",
    "corpora": [...], "chars", "sha256"}``. The handbook languages need ``apt-get`` (Debian or
    Ubuntu); elsewhere the error says so and names the alternatives.
    """
    from ._corpora import fetch_corpus
    from ._text import iter_texts

    named = []
    parts = []
    for name, what in mix:
        got, n = [], 0
        files = [p for p in sorted(fetch_corpus(name, progress=progress), key=str) if p.stat().st_size > 0]
        for text in iter_texts(files):  # read one file at a time, up to chars_per_corpus
            got.append(text[: chars_per_corpus - n])
            n += len(got[-1])
            if n >= chars_per_corpus:
                break
        named.append((name, "\n\n".join(got)))
        parts.append({"corpus": name, "domain": what, "chars": n})
    texts = mix_texts(named)
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
    desc = {"name": "lensbox default mix", "corpora": parts, "chars": sum(map(len, texts)),
            "sha256": h.hexdigest()[:16]}
    return texts, desc


__all__ = ["BLOCK_CHARS", "CHARS_PER_CORPUS", "DEFAULT_MIX", "default_training_texts", "mix_texts"]
