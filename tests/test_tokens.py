"""Readable token labels: byte-level BPE (SmolLM2), SentencePiece byte fallback, plain vocabularies."""

import json

import pytest

from lensbox._errors import InputError
from lensbox.core._tokens import (
    CONTINUATION,
    _BYTE_LEVEL,
    sequence_labels,
    token_bytes,
    token_label,
    tokenizer_kind,
    visible_text,
)


TEXTS = {
    "english": "The quick brown fox jumps over the lazy dog.\nIt was\tfine,  really. ",
    "chinese": "今天天气很好，我们去公园散步吧。魑魅魍魉",
    "japanese": "日本語のテキストです。カタカナとひらがなと漢字。",
    "russian": "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "arabic": "مرحبا بالعالم، هذه جملة قصيرة.",
    "mixed": "Hello 世界 — naïve café ☕ 🎉 done",
}


def unvisible(label_text: str) -> str:
    """Undo the visible-whitespace marks (the test texts contain none of these symbols)."""
    return label_text.replace("␣", " ").replace("↵", "\n").replace("⇥", "\t").replace("␍", "\r")


def joined_heads(labels):
    return "".join(lab for lab in labels if not lab.startswith(CONTINUATION))


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def smol_tok():
    """SmolLM2's tokenizer from lensbox's model cache (fetched and converted from the GGUF once)."""
    from models import smollm2_tokenizer

    return smollm2_tokenizer()


TRAIN_SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a small test of the tokenizer",
    "中文 文字 中文 文字",
    "the fox and the dog are friends",
] * 3


@pytest.fixture(scope="module")
def sp_tok():
    """A SentencePiece-style BPE with byte fallback, trained here on a few sentences.

    Characters it never saw (here most CJK characters, accented letters) are
    spelled as ``<0xNN>`` byte tokens, as Llama-2 and Gemma tokenizers do.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    base.train_from_iterator(TRAIN_SENTENCES, trainer)
    spec = json.loads(base.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):  # byte pieces live in the model vocabulary, not as added tokens
        vocab[f"<0x{b:02X}>"] = len(vocab)
    spec["model"]["byte_fallback"] = True
    tk = Tokenizer.from_str(json.dumps(spec))
    tk.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def word_tok():
    """A plain word-level tokenizer (no byte alphabet, no ▁)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[CLS]": 1, "hello": 2, "world": 3, "##ing": 4, "sing": 5}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", cls_token="[CLS]")


# ----------------------------------------------------------------------------- pure helpers
def test_visible_text_marks_edges_and_controls():
    assert visible_text(" the") == "␣the"
    assert visible_text("the  ") == "the␣␣"
    assert visible_text("a b") == "a b"  # inner spaces stay
    assert visible_text("   ") == "␣␣␣"
    assert visible_text("\n\tx\r") == "↵⇥x␍"
    assert visible_text("a\x1bb") == "a<1b>b"
    assert visible_text("") == ""


def test_byte_level_table_matches_tokenizers_alphabet():
    from tokenizers import pre_tokenizers

    assert sorted(_BYTE_LEVEL.values()) == list(range(256))
    assert set(_BYTE_LEVEL) == set(pre_tokenizers.ByteLevel.alphabet())
    # Independent check of the mapping itself: the library's byte-level pre-tokenizer
    # spells text with the same stand-ins, so mapping back must give the UTF-8 bytes.
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    text = "".join(chr(c) for c in range(1, 0x800)) + "世界🎉"
    ((spelled, _),) = pre.pre_tokenize_str(text)
    assert bytes(_BYTE_LEVEL[ch] for ch in spelled) == text.encode("utf-8")


def test_no_tokenizer_gives_id_labels():
    assert token_label(None, 42) == "#42"
    assert sequence_labels(None, [1, 2]) == ["#1", "#2"]
    assert tokenizer_kind(None) == "other"
    with pytest.raises(InputError, match="need a tokenizer"):
        token_bytes(None, 3)


# ----------------------------------------------------------------------------- SmolLM2 (byte-level BPE)
@pytest.mark.smollm2
def test_smollm2_kind_and_simple_labels(smol_tok):
    assert tokenizer_kind(smol_tok) == "byte-bpe"
    ids = smol_tok.encode(" the\n\tend", add_special_tokens=False)
    labels = [token_label(smol_tok, i) for i in ids]
    assert labels[0] == "␣the"
    assert "↵" in labels and "⇥" in labels
    im_start = smol_tok.convert_tokens_to_ids("<|im_start|>")
    assert token_label(smol_tok, im_start) == "<|im_start|>"
    assert token_bytes(smol_tok, im_start) == b"<|im_start|>"
    # An id past the tokenizer's vocabulary (models may pad it) is shown by number.
    assert token_label(smol_tok, len(smol_tok) + 5) == f"#{len(smol_tok) + 5}"
    with pytest.raises(InputError, match="does not know"):
        token_bytes(smol_tok, len(smol_tok) + 5)


@pytest.mark.smollm2
@pytest.mark.parametrize("lang", sorted(TEXTS))
def test_smollm2_labels_reproduce_decode(smol_tok, lang):
    text = TEXTS[lang]
    ids = smol_tok.encode(text, add_special_tokens=False)
    decoded = smol_tok.decode(ids)
    assert decoded == text
    # Raw bytes concatenate to the UTF-8 text (independent of any rendering).
    assert b"".join(token_bytes(smol_tok, i) for i in ids) == text.encode("utf-8")
    labels = sequence_labels(smol_tok, ids)
    assert len(labels) == len(ids)
    assert unvisible(joined_heads(labels)) == decoded
    # No hex remains once split characters are joined.
    assert not any("<" in lab for lab in labels)


@pytest.mark.smollm2
def test_smollm2_split_characters_are_joined(smol_tok):
    text = "Hello 世界 日本語"
    ids = smol_tok.encode(text, add_special_tokens=False)
    single = [token_label(smol_tok, i) for i in ids]
    labels = sequence_labels(smol_tok, ids)
    # SmolLM2 spells 世 as two byte tokens, the first holding bytes e4 b8.
    first = next(k for k, i in enumerate(ids) if token_bytes(smol_tok, i).startswith(b"\xe4\xb8"))
    assert token_bytes(smol_tok, ids[first]) == b"\xe4\xb8"
    assert single[first] == "<e4 b8>"
    assert labels[first] == "世"
    assert labels[first + 1] == CONTINUATION + "世"
    # Every continuation label repeats characters shown by its group's head.
    for k, lab in enumerate(labels):
        if lab.startswith(CONTINUATION):
            head = max(j for j in range(k) if not labels[j].startswith(CONTINUATION))
            assert unvisible(lab[1:]).strip() in unvisible(labels[head])
    # A lone partial token keeps its hex form, also inside a sequence.
    assert sequence_labels(smol_tok, [ids[first]]) == ["<e4 b8>"]
    eot = smol_tok.convert_tokens_to_ids("<|endoftext|>")
    cut = sequence_labels(smol_tok, [ids[first], eot, ids[first + 1]])
    assert cut == ["<e4 b8>", "<|endoftext|>", "<96>"]


# ----------------------------------------------------------------------------- SentencePiece byte fallback
def test_sentencepiece_byte_fallback(sp_tok):
    assert tokenizer_kind(sp_tok) == "sentencepiece"
    text = "the fox 世界 中文 café"
    ids = sp_tok.encode(text, add_special_tokens=False)
    pieces = sp_tok.convert_ids_to_tokens(ids)
    assert "<0xE4>" in pieces and "<0xB8>" in pieces  # 世 = e4 b8 96 was never seen in training
    k = pieces.index("<0xE4>")
    assert pieces[k : k + 3] == ["<0xE4>", "<0xB8>", "<0x96>"]
    assert token_bytes(sp_tok, ids[k]) == b"\xe4"
    assert token_label(sp_tok, ids[k]) == "<e4>"
    assert token_label(sp_tok, ids[0]) == "␣the"
    labels = sequence_labels(sp_tok, ids)
    assert labels[k : k + 3] == ["世", "↳世", "↳世"]
    # SentencePiece decoding drops the space it put before the first word.
    assert unvisible(joined_heads(labels)) == " " + sp_tok.decode(ids)
    assert b"".join(token_bytes(sp_tok, i) for i in ids) == (" " + text).encode("utf-8")
    # Two bytes of a three-byte character, cut off: one group shown as hex.
    assert sequence_labels(sp_tok, ids[k : k + 2]) == ["<e4 b8>", "↳<e4 b8>"]
    # Special tokens keep their text.
    assert token_label(sp_tok, sp_tok.bos_token_id) == "<s>"


def test_sentencepiece_raw_tokenizers_object(sp_tok):
    raw = sp_tok.backend_tokenizer
    assert tokenizer_kind(raw) == "sentencepiece"
    enc = raw.encode("中文 魑", add_special_tokens=False)
    labels = sequence_labels(raw, enc.ids)
    assert unvisible(joined_heads(labels)) == " 中文 魑"


def test_plain_vocabulary_kind_other(word_tok):
    assert tokenizer_kind(word_tok) == "other"
    ids = word_tok.encode("hello world", add_special_tokens=False)
    assert [token_label(word_tok, i) for i in ids] == ["hello", "world"]
    assert token_label(word_tok, 4) == "##ing"
    assert token_label(word_tok, word_tok.cls_token_id) == "[CLS]"
    assert sequence_labels(word_tok, [2, 999, 3]) == ["hello", "#999", "world"]
