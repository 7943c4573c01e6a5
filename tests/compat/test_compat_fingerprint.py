"""The fingerprint policy on HookedTransformer weight processing (TransformerLens 2.x / 3.x)."""

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

import lensbox  # noqa: E402
from lensbox import ModelError  # noqa: E402
from lensbox.core import check_fingerprint  # noqa: E402

CFG = dict(
    n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=64, d_vocab=100, n_ctx=32,
    act_fn="gelu", normalization_type="LN", seed=0,
)


def _processed(state_dict, **flags):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(**CFG))
    model.load_and_process_state_dict(state_dict, **flags)
    return model


def test_processing_that_keeps_the_residual_stream_matches_and_centring_is_refused():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    raw = HookedTransformer(HookedTransformerConfig(**CFG))
    sd = {k: v.clone() for k, v in raw.state_dict().items()}
    saved = lensbox.adapt(raw).fingerprint
    folded = _processed(sd, fold_ln=True, center_writing_weights=False, center_unembed=True, fold_value_biases=True)
    centred = _processed(sd, fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True)
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():  # independent check of what each processing does to the residual stream
        _, c_raw = raw.run_with_cache(tokens)
        _, c_fold = folded.run_with_cache(tokens)
        _, c_cen = centred.run_with_cache(tokens)
    torch.testing.assert_close(c_fold["blocks.1.hook_resid_post"], c_raw["blocks.1.hook_resid_post"], atol=1e-4, rtol=1e-4)
    e_raw = c_raw["blocks.0.hook_resid_pre"]
    torch.testing.assert_close(c_cen["blocks.0.hook_resid_pre"], e_raw - e_raw.mean(-1, keepdim=True), atol=1e-5, rtol=1e-4)

    fold_fp, cen_fp = lensbox.adapt(folded).fingerprint, lensbox.adapt(centred).fingerprint
    assert fold_fp.weights != saved.weights and cen_fp.weights != saved.weights
    check_fingerprint(saved, fold_fp, what="the lens")  # fold_ln, centred unembedding: the same streams
    with pytest.raises(ModelError, match="differs in behaviour at embed") as info:
        check_fingerprint(saved, cen_fp, what="the lens")  # a lens trained on raw streams would be wrong here
    assert "check_fingerprint=False" in str(info.value)


class _FakeJacobianLens:
    """The two attributes lensbox reads from a TransformerLens JacobianLens (4.x only): per-layer matrices and transport."""

    def __init__(self, jacobians):
        self.jacobians = jacobians

    def transport(self, residual, layer):
        return residual.float() @ self.jacobians[layer].T


def test_lens_files_of_the_raw_model_are_refused_on_a_centred_one(tmp_path):
    """A tuned-lens file saved on the raw model, loaded onto the model processed with center_writing_weights:
    refused by the fingerprint; a Jacobian lens (fitted on raw streams) refused by its basis check."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from lensbox.lenses import JacobianDecoder, TunedLens, evaluate, tuned_lens

    raw = HookedTransformer(HookedTransformerConfig(**CFG))
    sd = {k: v.clone() for k, v in raw.state_dict().items()}
    folded = _processed(sd, fold_ln=True, center_writing_weights=False, center_unembed=True, fold_value_biases=True)
    centred = _processed(sd, fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True)
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    path = TunedLens.identity(raw).save(tmp_path / "lens", model=raw)
    tuned_lens(folded, tokens, TunedLens.load(path))  # fold_ln / centred unembedding keep the streams: accepted
    with pytest.raises(ModelError, match=r"differs in behaviour at embed(.|\n)*check_fingerprint=False"):
        tuned_lens(centred, tokens, TunedLens.load(path))
    gen = torch.Generator().manual_seed(0)
    jl = _FakeJacobianLens({i: torch.eye(32) + 0.1 * torch.randn(32, 32, generator=gen) for i in range(2)})
    data = torch.randint(1, 100, (2, 6), generator=gen)
    evaluate(folded, data, {"jlens": JacobianDecoder(jl)}, window=6, progress=False)
    with pytest.raises(ModelError, match=r"Jacobian lens was fitted on a raw model(.|\n)*center_writing_weights"):
        evaluate(centred, data, {"jlens": JacobianDecoder(jl)}, window=6, progress=False)
