"""The chunked statistics engine (lensbox.lenses._stats): its kernels, its numerics and its memory bound."""

from typing import Any, Dict, List

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

import lensbox
from lensbox import InputError, NonFiniteError, Site
from lensbox.lenses import Decoder
from lensbox.lenses._kernels import (
    PAD_LOGIT,
    batched_dots,
    blocked_topk,
    count_greater,
    padded_width,
    reference_parts,
    topk_ids,
)
from lensbox.lenses._stats import check_finite, lens_statistics


def padded(x: Tensor) -> Tensor:
    """Copy ``x [n, vocab]`` into a work-buffer layout: padded width, PAD_LOGIT in the padding."""
    n, vocab = x.shape
    out = torch.full((n, padded_width(vocab)), PAD_LOGIT)
    out[:, :vocab] = x
    return out


# ----------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("vocab", [300, 1024, 5000])
@pytest.mark.parametrize("k", [1, 5, 8, 40])
def test_blocked_topk_equals_torch_topk(vocab: int, k: int) -> None:
    gen = torch.Generator().manual_seed(vocab + k)
    x = torch.randn(37, vocab, generator=gen) * 4
    x[3, 100:110] = 50.0 + torch.arange(10.0)  # many winners inside one block
    values, ids, local = blocked_topk(padded(x), k, vocab)
    if local is not None:
        ids = topk_ids(ids, local)
    expected = x.topk(k, dim=-1)
    assert torch.equal(values, expected.values)
    assert torch.equal(ids, expected.indices)


@pytest.mark.parametrize("vocab", [300, 2048])
def test_packed_count_equals_boolean_sum(vocab: int) -> None:
    gen = torch.Generator().manual_seed(vocab)
    x = torch.randn(23, vocab, generator=gen).round(decimals=1)  # plenty of ties
    t = x[:, :2].clone()
    t[0, 0] = 1e9  # nothing greater
    t[1, 1] = -1e9  # everything greater
    flags = torch.empty((2, 23, padded_width(vocab)), dtype=torch.bool)
    got = count_greater(padded(x), t, flags)
    expected = torch.stack([(x > t[:, j : j + 1]).sum(-1) for j in range(2)], dim=-1)
    assert torch.equal(got, expected)
    assert got[0, 0] == 0 and got[1, 1] == vocab


def test_batched_dots_equal_float64_einsum_to_1e6_relative() -> None:
    gen = torch.Generator().manual_seed(0)
    lc, pc, width = 5, 4, 49152
    rows = torch.rand(lc, pc, width, generator=gen)
    vectors = -torch.rand(3, pc, width, generator=gen) * 30
    got = batched_dots(rows, vectors)
    expected = torch.einsum("lpv,mpv->lpm", rows.double(), vectors.double())
    rel = ((got.double() - expected) / expected.abs()).abs().max().item()
    assert rel < 1e-6
    # an unblocked float32 product is measurably worse: the blocking is doing something
    plain = torch.bmm(rows.transpose(0, 1), vectors.permute(1, 2, 0)).transpose(0, 1)
    assert ((plain.double() - expected) / expected.abs()).abs().max().item() > 2 * rel


def test_reference_parts_are_exact_distributions() -> None:
    gen = torch.Generator().manual_seed(1)
    vocab = 49000  # padded to 49152
    x = torch.randn(2, 3, vocab, generator=gen) * 6 + 40  # large logits, like SmolLM2's
    logits = torch.stack([padded(x[i]) for i in range(2)])
    lp_out = torch.empty_like(logits)
    p, neg_h, argmax = reference_parts(logits, lp_out, vocab)
    ref = x.double().log_softmax(-1)
    assert (lp_out[..., :vocab].double() - ref).abs().max().item() < 2e-5
    assert (lp_out[..., vocab:] == 0).all() and (p[..., vocab:] == 0).all()
    assert (p.double().sum(-1) - 1).abs().max().item() < 1e-6
    assert (neg_h.double() - (ref.exp() * ref).sum(-1)).abs().max().item() < 1e-5
    assert torch.equal(argmax, x.argmax(-1))


# ----------------------------------------------------------------------------- numerics end to end
def _scaled_model(make_tiny_lm: Any, scale: float, vocab: int) -> Any:
    from models import build_tiny_hf_llama

    hf = build_tiny_hf_llama(seed=11, vocab=vocab)
    with torch.no_grad():
        hf.lm_head.weight.mul_(scale)
    return make_tiny_lm(hf_model=hf)


@pytest.mark.parametrize("vocab", [320, 49152])
def test_statistics_with_large_logits_match_float64(make_tiny_lm: Any, tiny_tokens: Tensor, vocab: int) -> None:
    """Logits of +-100 over a SmolLM2-sized vocabulary (as at SmolLM2's embeddings): float32
    normalisers are only good to ~1e-5 relative there, which the engine must not let leak
    into KL / entropy (log_softmax-based float32 statistics are off by ~1e-3 on this case)."""
    from test_logit_lens import assert_matches, reference_for

    model = _scaled_model(make_tiny_lm, 30.0, vocab)
    result = lensbox.logit_lens(model, tiny_tokens, chunk_rows=11)
    ref = reference_for(model, tiny_tokens, result.sites, k=5)
    assert ref["top_logprobs"].abs().max() > 50  # the case under test
    assert_matches(result, ref, atol=1e-4, rtol=1e-6)


# ----------------------------------------------------------------------------- memory bound
class _RecordingDecoder(Decoder):
    """The stock decoder's arithmetic behind a ``decode`` override, recording rows per call."""

    def __init__(self) -> None:
        self.rows: List[int] = []

    def decode(self, adapter: Any, rows: Tensor) -> Tensor:
        self.rows.append(int(rows.shape[0]))
        return adapter.decode(rows)


def test_decode_never_sees_more_than_chunk_rows(tiny_lm: Any) -> None:
    tokens = torch.randint(1, 300, (1, 40), generator=torch.Generator().manual_seed(2))
    decoder = _RecordingDecoder()
    result = lensbox.logit_lens(tiny_lm, tokens, decoder=decoder, chunk_rows=16)
    n_sites = len(result.sites)
    assert decoder.rows and max(decoder.rows) <= 16
    assert sum(decoder.rows) == n_sites * 40  # every (site, position) row decoded exactly once
    # and the override path computes the same statistics as the stock one
    stock = lensbox.logit_lens(tiny_lm, tokens, chunk_rows=16)
    for name in ("kl_final", "kl_input_reverse", "entropy", "next_logprob", "top_logprobs"):
        torch.testing.assert_close(getattr(result, name), getattr(stock, name), atol=2e-5, rtol=0, equal_nan=True)
    assert torch.equal(result.next_rank, stock.next_rank)


class _LargestVocabTensor(TorchDispatchMode):
    """Records, over every op's outputs, the most rows of any tensor whose last axis is vocabulary-wide."""

    def __init__(self, widths: set) -> None:
        super().__init__()
        self.widths = widths
        self.max_rows = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, Tensor) and t.ndim >= 1 and t.shape[-1] in self.widths:
                self.max_rows = max(self.max_rows, t.numel() // t.shape[-1])
        return out


@pytest.mark.parametrize("decoder", [None, "embed_t"])
def test_no_layer_by_position_by_vocab_tensor(tiny_lm: Any, decoder: Any) -> None:
    adapter = lensbox.adapt(tiny_lm)
    tokens = torch.randint(1, 300, (1, 64), generator=torch.Generator().manual_seed(3))
    sites = adapter.sites(None, include_mid=True)
    streams = adapter.run_and_capture(tokens, sites)
    final = streams[Site.resid_post(adapter.n_layers - 1)]
    chunk_rows = 16
    spy = _LargestVocabTensor({adapter.d_vocab, padded_width(adapter.d_vocab)})
    with spy:
        stats = lens_statistics(adapter, streams, sites, tokens, lensbox.lenses._decoders.make_decoder(decoder), final=final, chunk_rows=chunk_rows)
    full_rows = len(sites) * tokens.shape[1]  # what an unchunked computation would hold: 7 x 64
    # Two boolean rank buffers of chunk_rows rows are the largest vocabulary-wide tensors.
    assert 0 < spy.max_rows <= 2 * chunk_rows < full_rows // 8
    assert stats["kl_final"].shape == (1, len(sites), 64)


# ----------------------------------------------------------------------------- errors and checks
def _inputs(tiny_lm: Any, tiny_tokens: Tensor) -> Dict[str, Any]:
    adapter = lensbox.adapt(tiny_lm)
    sites = adapter.sites(None)
    streams = adapter.run_and_capture(tiny_tokens, sites)
    return {
        "adapter": adapter,
        "streams": streams,
        "sites": sites,
        "tokens": tiny_tokens,
        "decoder": Decoder(),
        "final": streams[Site.resid_post(adapter.n_layers - 1)],
    }


@pytest.mark.parametrize(
    "change,match",
    [
        ({"k": 0}, "top-k"),
        ({"k": 10_000}, "top-k"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"on_nonfinite": "ignore"}, "on_nonfinite"),
    ],
)
def test_bad_arguments_are_explained(tiny_lm: Any, tiny_tokens: Tensor, change: Dict[str, Any], match: str) -> None:
    kwargs = _inputs(tiny_lm, tiny_tokens)
    kwargs.update(change)
    with pytest.raises(InputError) as info:
        lens_statistics(**kwargs)
    text = str(info.value)
    assert "expected:" in text and "fix:" in text
    assert match.split("_")[0] in text or match in text


def test_missing_embed_stream_is_explained(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    kwargs = _inputs(tiny_lm, tiny_tokens)
    kwargs["streams"] = {s: t for s, t in kwargs["streams"].items() if s != Site.embed()}
    kwargs["sites"] = [s for s in kwargs["sites"] if s != Site.embed()]
    with pytest.raises(InputError, match="embed"):
        lens_statistics(**kwargs)


def test_check_finite_reports_cells() -> None:
    a = torch.zeros(2, 5, 3)
    b = torch.zeros(2, 5, 3)
    assert check_finite({Site.embed(): a, Site.resid_post(0): b}) == {}
    b[1, 2, 0] = float("-inf")
    b[0, 4, 2] = float("nan")
    bad = check_finite({Site.embed(): a, Site.resid_post(0): b}, "mark")
    assert list(bad) == [Site.resid_post(0)]
    assert bad[Site.resid_post(0)].nonzero().tolist() == [[0, 4], [1, 2]]
    with pytest.raises(NonFiniteError, match=r"resid_post\.0 at \(batch, pos\) \[\[0, 4\], \[1, 2\]\]"):
        check_finite({Site.embed(): a, Site.resid_post(0): b})


def test_statistics_are_float32_on_cpu(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    stats = lens_statistics(**_inputs(tiny_lm, tiny_tokens))
    for name, t in stats.items():
        assert t.device.type == "cpu", name
        assert t.dtype in (torch.float32, torch.int64), (name, t.dtype)
