"""Readable labels for tokens, and one token read from user input (`token_id`).

Tokenizers store tokens in private alphabets: byte-level BPE (GPT-2, SmolLM2,
Llama 3, Qwen) maps every byte to a printable stand-in (a leading space becomes
``Ġ``), SentencePiece marks spaces with ``▁`` and spells unknown characters as
byte tokens such as ``<0xE6>``. This module turns any token back into the bytes
it stands for and renders those bytes for people:

* leading and trailing spaces become ``␣``; newlines ``↵``, tabs ``⇥`` and
  carriage returns ``␍`` everywhere; other control characters as hex;
* bytes that are not valid UTF-8 on their own are shown as hex, ``<e4 b8>``;
* special and added tokens (``<|im_start|>``) keep their text;
* in a sequence, tokens whose bytes only together form a character (a Chinese
  character split over two byte tokens) all show that character, the second
  and later ones prefixed with ``↳`` (the first shows the whole joined text).
"""

import codecs
import re
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .._errors import InputError

__all__ = ["TokenLike", "sequence_labels", "token_bytes", "token_id", "token_label", "tokenizer_kind", "visible_text"]

TokenLike = Union[int, str]
"""A token: its id, or a string that the tokenizer reads as exactly one token (e.g. ``" Mary"``)."""

CONTINUATION = "↳"
_VISIBLE = {"\n": "↵", "\t": "⇥", "\r": "␍"}
_SPACE = "␣"
_SP_SPACE = "▁"
_SP_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


# --------------------------------------------------------------------- byte-level BPE alphabet
def _byte_level_table() -> Dict[str, int]:
    """Map each stand-in character of byte-level BPE back to its byte.

    Bytes that are printable Latin-1 characters stand for themselves; the other
    68 bytes (controls, space, DEL, NBSP, soft hyphen) are given the code points
    256, 257, ... in increasing byte order.
    """
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    table: Dict[str, int] = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


_BYTE_LEVEL = _byte_level_table()


# --------------------------------------------------------------------- tokenizer introspection
class _Info:
    """What we learned about one tokenizer (cached per tokenizer object)."""

    def __init__(self, kind: str, added: Dict[int, str]) -> None:
        self.kind = kind
        self.added = added


_INFO_CACHE: "weakref.WeakKeyDictionary[Any, _Info]" = weakref.WeakKeyDictionary()


def _backend(tokenizer: Any) -> Any:
    """The `tokenizers.Tokenizer` behind a fast HF tokenizer, or the object itself if it is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend
    if hasattr(tokenizer, "id_to_token") and hasattr(tokenizer, "decoder"):
        return tokenizer  # a raw tokenizers.Tokenizer
    return None


def _added_tokens(tokenizer: Any) -> Dict[int, str]:
    found: Dict[int, str] = {}
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if decoder is None and hasattr(tokenizer, "get_added_tokens_decoder"):
        try:
            decoder = tokenizer.get_added_tokens_decoder()
        except Exception:  # pragma: no cover - exotic tokenizer
            decoder = None
    if isinstance(decoder, dict):
        for idx, tok in decoder.items():
            content = getattr(tok, "content", tok)
            if isinstance(content, str):
                found[int(idx)] = content
    ids = getattr(tokenizer, "all_special_ids", None)
    names = getattr(tokenizer, "all_special_tokens", None)
    if isinstance(ids, (list, tuple)) and isinstance(names, (list, tuple)) and len(ids) == len(names):
        for idx, name in zip(ids, names):
            if isinstance(idx, int) and isinstance(name, str):
                found.setdefault(idx, name)
    return found


def _detect_kind(tokenizer: Any) -> str:
    backend = _backend(tokenizer)
    if backend is not None:
        decoder_desc = repr(getattr(backend, "decoder", None))
        if "ByteLevel" in decoder_desc:
            return "byte-bpe"
        if "ByteFallback" in decoder_desc or "Metaspace" in decoder_desc or _SP_SPACE in decoder_desc:
            return "sentencepiece"
        if getattr(getattr(backend, "model", None), "byte_fallback", False):
            return "sentencepiece"
        pre = repr(getattr(backend, "pre_tokenizer", None))
        if "ByteLevel" in pre:
            return "byte-bpe"
        if "Metaspace" in pre:
            return "sentencepiece"
    if getattr(tokenizer, "sp_model", None) is not None:
        return "sentencepiece"
    if getattr(tokenizer, "byte_decoder", None) is not None:
        return "byte-bpe"
    # Last resort: look at how the vocabulary spells word-initial tokens.
    vocab = None
    if hasattr(tokenizer, "get_vocab"):
        try:
            vocab = tokenizer.get_vocab()
        except Exception:  # pragma: no cover - exotic tokenizer
            vocab = None
    if isinstance(vocab, dict) and vocab:
        g = sum(1 for t in vocab if isinstance(t, str) and t.startswith("Ġ"))
        s = sum(1 for t in vocab if isinstance(t, str) and t.startswith(_SP_SPACE))
        if g > max(s, len(vocab) // 20):
            return "byte-bpe"
        if s > max(g, len(vocab) // 20):
            return "sentencepiece"
    return "other"


def _info(tokenizer: Any) -> _Info:
    try:
        cached = _INFO_CACHE.get(tokenizer)
    except TypeError:  # not hashable / not weak-referenceable
        cached = None
    if cached is not None:
        return cached
    info = _Info(_detect_kind(tokenizer), _added_tokens(tokenizer))
    try:
        _INFO_CACHE[tokenizer] = info
    except TypeError:
        pass
    return info


def tokenizer_kind(tokenizer: Any) -> str:
    """How ``tokenizer`` spells tokens: ``"byte-bpe"``, ``"sentencepiece"`` or ``"other"``.

    ``"byte-bpe"``: every byte has a printable stand-in (GPT-2, SmolLM2, Llama 3).
    ``"sentencepiece"``: ``▁`` marks a space and unknown bytes are ``<0xNN>`` tokens.
    ``"other"``: tokens are plain text (WordPiece, character vocabularies).
    """
    if tokenizer is None:
        return "other"
    return _info(tokenizer).kind


def _raw_token(tokenizer: Any, token_id: int) -> Optional[str]:
    if token_id < 0:
        return None
    try:
        if hasattr(tokenizer, "convert_ids_to_tokens"):
            tok = tokenizer.convert_ids_to_tokens(token_id)
        elif hasattr(tokenizer, "id_to_token"):
            tok = tokenizer.id_to_token(token_id)
        else:
            return None
    except (IndexError, KeyError, ValueError, OverflowError, TypeError):
        return None
    return tok if isinstance(tok, str) else None


def _bytes_and_special(tokenizer: Any, token_id: int) -> Tuple[Optional[bytes], bool]:
    """Raw bytes of a token (None when the id is unknown) and whether it is an added token."""
    info = _info(tokenizer)
    raw = _raw_token(tokenizer, token_id)
    if info.kind == "sentencepiece" and raw is not None:
        m = _SP_BYTE.match(raw)
        if m:
            return bytes([int(m.group(1), 16)]), False
    if token_id in info.added:
        return info.added[token_id].encode("utf-8"), True
    if raw is None:
        return None, False
    if info.kind == "byte-bpe":
        out = bytearray()
        for ch in raw:
            byte = _BYTE_LEVEL.get(ch)
            if byte is None:  # a character outside the byte alphabet: take it literally
                out += ch.encode("utf-8")
            else:
                out.append(byte)
        return bytes(out), False
    if info.kind == "sentencepiece":
        return raw.replace(_SP_SPACE, " ").encode("utf-8"), False
    return raw.encode("utf-8"), False


def token_bytes(tokenizer: Any, token_id: int) -> bytes:
    """The bytes token ``token_id`` stands for (``Ġa`` -> ``b" a"``, ``<0xE6>`` -> ``b"\\xe6"``).

    Special and added tokens give the UTF-8 bytes of their text.
    """
    if tokenizer is None:
        raise InputError(
            "Token bytes need a tokenizer.",
            expected="a Hugging Face tokenizer (or tokenizers.Tokenizer)",
            received="None",
            fix="pass the model's tokenizer, e.g. model.tokenizer",
        )
    data, _ = _bytes_and_special(tokenizer, int(token_id))
    if data is None:
        raise InputError(
            "The tokenizer does not know this token id.",
            expected="an id the tokenizer can convert to a token",
            received=f"id {int(token_id)}",
            fix="check the id comes from this tokenizer (models may pad the vocabulary past the tokenizer's size)",
        )
    return data


# --------------------------------------------------------------------- one token from user input
def token_id(tokenizer: Any, d_vocab: int, token: TokenLike, *, what: str = "token") -> int:
    """The id of ``token``: an id in ``0..d_vocab-1``, or text the tokenizer reads as exactly one token.

    ``what`` names the argument in the messages (``"target"``, ``"minus"``, ``"token"``). Every
    refusal is an `InputError` (the input is what needs to change): a value that is neither an int
    nor a str, an id outside the vocabulary, text with no tokenizer to read it, or text that is
    not exactly one token (the message lists the pieces it became).
    """
    if isinstance(token, bool) or not isinstance(token, (int, str)):
        raise InputError(
            f"Cannot read this {what} as a token.",
            expected="a token id (int) or a string that is exactly one token, e.g. ' Mary'",
            received=f"{type(token).__name__}: {token!r}",
            fix=f"pass the token's text with its leading space or its id, e.g. {what}=' Mary' or {what}=1234",
        )
    if isinstance(token, int):
        if not 0 <= token < d_vocab:
            raise InputError(
                f"The {what} token id is outside the vocabulary.",
                expected=f"an id in 0..{d_vocab - 1}",
                received=str(token),
                fix="take the id from this model's tokenizer",
            )
        return token
    if tokenizer is None:
        raise InputError(
            f"The model has no tokenizer, so the {what} given as text cannot be read.",
            expected="a token id (int), or a model with model.tokenizer set",
            received=f"{token!r} and model.tokenizer is None",
            fix=f"pass the {what} as a token id",
        )
    ids = [int(i) for i in tokenizer.encode(token, add_special_tokens=False)]
    if len(ids) != 1:
        pieces = [token_label(tokenizer, i) for i in ids]
        example = f" (e.g. {what}={pieces[0]!r} or its id {ids[0]})" if ids else ""
        raise InputError(
            f"The {what} {token!r} is not one token for this tokenizer.",
            expected="text the tokenizer reads as exactly one token",
            received=f"{len(ids)} tokens: {pieces} (ids {ids})",
            fix=f"pass one of these tokens{example}; mind the leading space (' Mary' vs 'Mary')",
        )
    return ids[0]


# --------------------------------------------------------------------- rendering
def _hex(run: bytes) -> str:
    return "<" + " ".join(f"{b:02x}" for b in run) + ">"


def visible_text(text: str) -> str:
    """Make whitespace visible: leading/trailing spaces ``␣``, ``\\n`` ``↵``, ``\\t`` ``⇥``, ``\\r`` ``␍``.

    Other control characters are shown as hex bytes (``<1b>``). Spaces between
    other characters are kept as they are.
    """
    if not text:
        return text
    core = text.lstrip(" ")
    lead = len(text) - len(core)
    stripped = core.rstrip(" ")
    trail = len(core) - len(stripped)
    parts: List[str] = [_SPACE * lead]
    for ch in stripped:
        if ch in _VISIBLE:
            parts.append(_VISIBLE[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            parts.append(_hex(bytes([ord(ch)])))
        else:
            parts.append(ch)
    parts.append(_SPACE * trail)
    return "".join(parts)


def _render(data: bytes) -> str:
    """Readable text for some bytes: valid UTF-8 shown visibly, invalid runs as hex."""
    # Invalid bytes decode to lone surrogates U+DC80..U+DCFF; split on those runs.
    text = data.decode("utf-8", errors="surrogateescape")
    out: List[str] = []
    for piece in re.split("([\udc80-\udcff]+)", text):
        if piece and 0xDC80 <= ord(piece[0]) <= 0xDCFF:
            out.append(_hex(bytes(ord(ch) - 0xDC00 for ch in piece)))
        elif piece:
            # Spaces next to a hex run count as leading/trailing of that text piece.
            out.append(visible_text(piece))
    return "".join(out)


def token_label(tokenizer: Any, token_id: int) -> str:
    """A readable label for one token.

    ``" the"`` -> ``"␣the"``, ``"\\n"`` -> ``"↵"``, a lone byte token -> ``"<e4>"``,
    ``<|im_start|>`` stays as it is; without a tokenizer the label is ``"#<id>"``.
    Unknown ids (past the tokenizer's vocabulary) are also shown as ``"#<id>"``.
    """
    token_id = int(token_id)
    if tokenizer is None:
        return f"#{token_id}"
    data, special = _bytes_and_special(tokenizer, token_id)
    if data is None:
        return f"#{token_id}"
    if special:
        return data.decode("utf-8")
    return _render(data)


def _char_starts(data: bytes) -> List[bool]:
    """For each byte offset 0..len(data), whether a character (or a stray byte) starts there."""
    starts = [False] * (len(data) + 1)
    starts[len(data)] = True
    i = 0
    n = len(data)
    while i < n:
        starts[i] = True
        b = data[i]
        if b < 0x80:
            width = 1
        elif 0xC2 <= b <= 0xDF:
            width = 2
        elif 0xE0 <= b <= 0xEF:
            width = 3
        elif 0xF0 <= b <= 0xF4:
            width = 4
        else:
            width = 1
        if width > 1:
            # Take the lead byte with the continuation bytes that follow it (at most
            # width - 1). A complete valid character, or a valid but truncated start
            # of one (cut by a special token or the end of the sequence), is one unit;
            # anything else leaves the lead byte alone.
            k = 1
            while k < width and i + k < n and 0x80 <= data[i + k] <= 0xBF:
                k += 1
            try:
                codecs.getincrementaldecoder("utf-8")().decode(data[i : i + k], final=(k == width))
            except UnicodeDecodeError:
                k = 1
            width = k
        i += width
    return starts


def sequence_labels(tokenizer: Any, ids: Sequence[int]) -> List[str]:
    """Labels for a token sequence, joining byte tokens that only together form characters.

    The first token of such a group shows the group's whole text; the second and
    later tokens show the characters their bytes belong to, prefixed with ``↳``. Joining the labels of the tokens
    that do not start with ``↳`` (and undoing the visible-whitespace marks) gives
    the decoded text.
    """
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return [f"#{i}" for i in ids]
    pieces: List[Optional[bytes]] = []
    specials: List[bool] = []
    for i in ids:
        data, special = _bytes_and_special(tokenizer, i)
        pieces.append(data)
        specials.append(special)
    labels: List[str] = []
    # Unknown ids break the byte stream into independent stretches.
    pos = 0
    while pos < len(ids):
        if pieces[pos] is None:
            labels.append(f"#{ids[pos]}")
            pos += 1
            continue
        end = pos
        while end < len(ids) and pieces[end] is not None:
            end += 1
        labels.extend(_stretch_labels([p for p in pieces[pos:end] if p is not None], specials[pos:end]))
        pos = end
    return labels


def _stretch_labels(pieces: List[bytes], specials: List[bool]) -> List[str]:
    data = b"".join(pieces)
    starts = _char_starts(data)
    offsets = [0]
    for p in pieces:
        offsets.append(offsets[-1] + len(p))
    labels: List[str] = []
    k = 0
    while k < len(pieces):
        # Extend the group while the boundary after token j falls inside a character.
        j = k
        while j + 1 < len(pieces) and not starts[offsets[j + 1]]:
            j += 1
        if j == k:
            labels.append(pieces[k].decode("utf-8") if specials[k] else _render(pieces[k]))
        else:
            labels.append(_render(data[offsets[k] : offsets[j + 1]]))
            for t in range(k + 1, j + 1):
                # A continuation token shows the characters its bytes belong to.
                lo = offsets[t]
                while not starts[lo]:
                    lo -= 1
                hi = max(offsets[t + 1], lo + 1)
                while not starts[hi]:
                    hi += 1
                labels.append(CONTINUATION + _render(data[lo:hi]))
        k = j + 1
    return labels
