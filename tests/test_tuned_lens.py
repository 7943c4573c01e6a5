"""TunedLens: the analyzer, its decoder, save / load / import, and bad lens directories."""

import json
import math
from pathlib import Path

import pytest
import torch

import lensbox
from lensbox import ArtifactError, InputError, ModelError, Site, SiteError
from lensbox._io import sha256_file
from lensbox.core import get_analyzer
from lensbox.lenses._tuned import Translators, TunedLens, translator_sites, tuned_lens

from test_tuned_lens_models import TEXT, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def other_model():
    return tiny_model(seed=1)


def random_lens(model, seed: int = 0, scale: float = 0.3) -> TunedLens:
    lens = TunedLens.identity(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tr = lens.translators
        tr.weight.copy_(torch.randn(tr.weight.shape, generator=gen) * scale / math.sqrt(tr.d_model))
        tr.bias.copy_(torch.randn(tr.bias.shape, generator=gen) * scale)
    return lens


def reference_kl(model, tokens, lens: TunedLens):
    """KL(final || tuned lens) per site, [site, pos], computed directly from a full activation cache."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        final_lp = logits[0].float().log_softmax(-1)
        out = {}
        for s in lens.translators.sites:
            name = "blocks.0.hook_resid_pre" if s == Site.embed() else f"blocks.{s.layer}.hook_{s.kind.value}"
            h = cache[name][0].float()
            i = lens.translators.sites.index(s)
            t = h + h @ lens.translators.weight[i].T + lens.translators.bias[i]
            lp = (model.ln_final(t) @ model.W_U + model.b_U).float().log_softmax(-1)
            out[s] = (final_lp.exp() * (final_lp - lp)).sum(-1)
    return out


def test_identity_lens_is_the_logit_lens(model):
    lens = TunedLens.identity(model)
    assert lens.lens_sites == translator_sites(3)
    res = lensbox.analyze(model, TEXT[:60], ["logit_lens", lens])
    a, b = res["logit_lens"], res["tuned_lens"]
    assert a.sites == b.sites
    for field in ("kl_final", "kl_input", "next_logprob", "entropy"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), equal_nan=True)
    assert float(a.kl_final[0, 0].mean()) > 0.1  # the embeddings are far from the final layer


def test_translator_matches_plain_pytorch(model):
    lens = random_lens(model)
    tokens = model.to_tokens(TEXT[:50])
    res = lensbox.analyze(model, tokens, ["logit_lens", lens])
    tuned, logit = res["tuned_lens"], res["logit_lens"]
    ref = reference_kl(model, tokens, lens)
    for s, kl in ref.items():
        i = tuned.sites.index(s)
        torch.testing.assert_close(tuned.kl_final[0, i], kl, atol=2e-4, rtol=1e-4)
    # the random translators really change the statistics, and the final site stays exact
    assert not torch.allclose(tuned.kl_final[0, 0], logit.kl_final[0, 0])
    assert float(tuned.kl_final[0, -1].abs().max()) < 1e-4
    assert "translator" in tuned.decoder


def test_registered_and_loadable_by_path(model, tmp_path):
    lens = random_lens(model)
    lens.save(tmp_path / "lens")
    assert get_analyzer("tuned_lens") is TunedLens
    res = lensbox.analyze(model, TEXT[:40], ["logit_lens", ("tuned_lens", {"path": tmp_path / "lens"})])
    direct = lens(model, TEXT[:40])
    torch.testing.assert_close(res["tuned_lens"].kl_final, direct.kl_final)
    via_fn = tuned_lens(model, TEXT[:40], tmp_path / "lens", sites="embed,0")
    assert [s.name for s in via_fn.sites] == ["embed", "resid_post.0"]
    torch.testing.assert_close(via_fn.kl_final[:, 0], direct.kl_final[:, 0])


def test_no_translators_is_a_clear_error(model):
    with pytest.raises(InputError, match="no translators"):
        lensbox.analyze(model, TEXT[:20], [TunedLens()])


def test_save_load_roundtrip(model, tmp_path):
    lens = random_lens(model, seed=3)
    lens.config["metrics"] = {"val_kl_mean": 0.5, "nan_metric": float("nan")}
    target = lens.save(tmp_path / "lens")
    files = sorted(p.name for p in target.iterdir())
    assert files == ["config.json", "translators.safetensors"]
    cfg = json.loads((target / "config.json").read_text())
    assert cfg["format"] == "lensbox.tuned_lens" and cfg["format_version"] == 2
    assert cfg["n_layers"] == 3 and cfg["d_model"] == 32
    assert cfg["sites"] == ["embed", "resid_post.0", "resid_post.1"]
    assert cfg["fingerprint"] == lensbox.adapt(model).fingerprint.to_json()
    assert cfg["files"] == {"translators.safetensors": sha256_file(target / "translators.safetensors")}
    assert cfg["metrics"]["nan_metric"] is None  # strict JSON
    loaded = TunedLens.load(target, model)
    torch.testing.assert_close(loaded.translators.weight, lens.translators.weight, rtol=0, atol=0)
    torch.testing.assert_close(loaded.translators.bias, lens.translators.bias, rtol=0, atol=0)
    sub = TunedLens.load(target, sites="embed,1")
    assert sub.lens_sites == [Site.embed(), Site.resid_post(1)]
    torch.testing.assert_close(sub.translators.weight[1], lens.translators.weight[2])


def test_save_never_clobbers(model, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    lens = random_lens(model)
    for overwrite in (False, True):  # a folder of the user's files is never replaced
        with pytest.raises(ArtifactError):
            lens.save(target, overwrite=overwrite)
        assert (target / "notes.txt").read_text() == "precious"
    saved = lens.save(tmp_path / "lens")
    with pytest.raises(ArtifactError, match="overwrite"):
        lens.save(saved)
    other = random_lens(model, seed=9)
    other.save(saved, overwrite=True)  # a lens folder may be replaced when asked
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "translators.safetensors"]
    torch.testing.assert_close(TunedLens.load(saved).translators.weight, other.translators.weight)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    empty = tmp_path / "empty"
    empty.mkdir()
    lens.save(empty)  # an empty directory is fine
    with pytest.raises(ArtifactError):
        lens.save(saved / "config.json")


def test_bare_translators_need_a_model_to_save(model, tmp_path):
    lens = TunedLens(Translators(translator_sites(3), 32))
    with pytest.raises(InputError, match="model"):
        lens.save(tmp_path / "x")
    lens.save(tmp_path / "x", model=model)
    assert TunedLens.load(tmp_path / "x", model).lens_sites == translator_sites(3)


def test_bad_lens_directories(model, tmp_path):
    lens = random_lens(model)
    good = lens.save(tmp_path / "good")
    with pytest.raises(ArtifactError, match="does not exist"):
        TunedLens.load(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="directory, not a file"):
        TunedLens.load(good / "config.json")

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((good / "config.json").read_text())
    with pytest.raises(ArtifactError, match="translators.safetensors is missing"):
        TunedLens.load(no_weights)

    no_cfg = tmp_path / "no_cfg"
    no_cfg.mkdir()
    (no_cfg / "translators.safetensors").write_bytes((good / "translators.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="no config.json"):
        TunedLens.load(no_cfg)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((good / "config.json").read_text())
    raw = (good / "translators.safetensors").read_bytes()
    (corrupt / "translators.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        TunedLens.load(corrupt)
    flipped = bytearray(raw)
    flipped[-5] ^= 0xFF  # one weight byte
    (corrupt / "translators.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        TunedLens.load(corrupt)

    future = tmp_path / "future"
    future.mkdir()
    cfg = json.loads((good / "config.json").read_text())
    cfg["format_version"] = 99
    (future / "config.json").write_text(json.dumps(cfg))
    (future / "translators.safetensors").write_bytes(raw)
    with pytest.raises(ArtifactError, match="newer lensbox"):
        TunedLens.load(future)

    bad_json = tmp_path / "bad_json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        TunedLens.load(bad_json)

    nonfinite = random_lens(model)
    with torch.no_grad():
        nonfinite.translators.weight[1, 0, 0] = float("nan")
    nonfinite.save(tmp_path / "nan")
    with pytest.raises(ArtifactError, match="NaN"):
        TunedLens.load(tmp_path / "nan")


def write_v1_lens(directory: Path, lens: TunedLens, model, **changes) -> Path:
    """A lens folder as lensbox 0.1 wrote it: format_version 1, weights_file, the decoder-only fingerprint dict."""
    from safetensors.torch import save_file

    directory.mkdir()
    save_file(lens.translators.state_tensors(), str(directory / "translators.safetensors"))
    fp = lensbox.adapt(model).fingerprint
    cfg = {
        "format": "lensbox.tuned_lens", "format_version": 1, "model_name": "tiny", "d_model": 32, "n_layers": 3,
        "d_vocab": 300, "sites": [s.name for s in lens.translators.sites], "weights_file": "translators.safetensors",
        "fingerprint": {"d_model": 32, "d_vocab": fp.d_vocab, "n_layers": 3, "top_ids": [list(r) for r in fp.decoder_ids],
                        "top_logprobs": [list(r) for r in fp.decoder_logprobs], "digest": "x"},
        **changes,
    }
    (directory / "config.json").write_text(json.dumps(cfg))
    return directory


def test_version_1_lens_folders_still_load(model, other_model, tmp_path):
    lens = random_lens(model, seed=5)
    v1 = write_v1_lens(tmp_path / "v1", lens, model)
    loaded = TunedLens.load(v1, model)
    torch.testing.assert_close(loaded.translators.weight, lens.translators.weight, rtol=0, atol=0)
    with pytest.raises(ModelError, match="another model"):
        TunedLens.load(v1, other_model)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes((v1 / "translators.safetensors").read_bytes())
    evil = write_v1_lens(tmp_path / "evil", lens, model, weights_file=str(outside))
    with pytest.raises(ArtifactError, match="outside the lens folder"):
        TunedLens.load(evil)
    bare = write_v1_lens(tmp_path / "bare", lens, model, fingerprint=None)
    with pytest.raises(ModelError, match="no model fingerprint"):
        TunedLens.load(bare, model)
    assert TunedLens.load(bare, model, check_fingerprint=False).lens_sites == lens.lens_sites


def test_lens_for_another_model(model, other_model, tmp_path):
    lens = random_lens(model)
    lens.save(tmp_path / "lens")
    with pytest.raises(ModelError, match="fingerprint"):
        TunedLens.load(tmp_path / "lens", other_model)
    loaded = TunedLens.load(tmp_path / "lens")  # deferred check happens at run time
    with pytest.raises(ModelError, match="another model"):
        lensbox.analyze(other_model, TEXT[:20], [loaded])
    forced = TunedLens.load(tmp_path / "lens", other_model, check_fingerprint=False)
    res = lensbox.analyze(other_model, TEXT[:20], [forced])
    assert torch.isfinite(res["tuned_lens"].kl_final).all()

    wide = tiny_model(seed=0, d_model=64)
    with pytest.raises(ModelError, match="width"):
        lensbox.analyze(wide, TEXT[:20], [loaded])


def test_requested_sites_the_lens_lacks(model):
    lens = TunedLens.identity(model, sites="embed,0")
    assert lens.lens_sites == [Site.embed(), Site.resid_post(0)]
    res = lens(model, TEXT[:30])
    assert [s.name for s in res.sites] == ["embed", "resid_post.0", "resid_post.2"]  # + the final site
    picky = TunedLens(lens.translators, sites="0-2", config=lens.config)
    with pytest.raises(SiteError, match="resid_post.1"):
        picky(model, TEXT[:30])
    with pytest.raises(SiteError, match="no translator"):
        lens.translators.subset([Site.resid_post(1)])


def test_mid_sites(model):
    lens = TunedLens.identity(model, include_mid=True)
    assert Site.resid_mid(2) in lens.lens_sites and Site.resid_post(2) not in lens.lens_sites
    res = lensbox.analyze(model, TEXT[:30], ["logit_lens", lens])
    assert Site.resid_mid(1) in res["tuned_lens"].sites
    with pytest.raises(SiteError, match="resid_pre"):
        Translators([Site.resid_pre(2)], 32)


def test_compat_mode_uses_the_same_lens(tmp_path):
    raw, compat = tiny_model(seed=0), tiny_model(seed=0, compat=True)
    lens = random_lens(raw)
    lens.save(tmp_path / "lens")
    loaded = TunedLens.load(tmp_path / "lens", compat)  # same decoder fingerprint
    tokens = raw.to_tokens(TEXT[:40])
    a = lens(raw, tokens)
    b = loaded(compat, tokens)
    torch.testing.assert_close(a.kl_final, b.kl_final, atol=2e-3, rtol=1e-3)


# ------------------------------------------------------------------ tuned-lens library import
class NotATensor:
    """An arbitrary class: torch.load(weights_only=True) must refuse to unpickle it."""


def write_tuned_lens_dir(path: Path, lens: TunedLens, model) -> Path:
    """A directory in the tuned-lens library's layout: params.pt (state dict) + config.json."""
    path.mkdir(parents=True)
    tr = lens.translators
    state = {}
    for i, s in enumerate(tr.sites):  # embed, resid_post.0, resid_post.1 -> translators 0, 1, 2
        state[f"{i}.weight"] = tr.weight[i].detach().clone()
        state[f"{i}.bias"] = tr.bias[i].detach().clone()
    torch.save(state, path / "params.pt")
    from lensbox.lenses._tuned_io import tuned_lens_unembed_hash

    cfg = {
        "base_model_name_or_path": "tiny",
        "d_model": 32,
        "num_hidden_layers": 3,
        "bias": True,
        "base_model_revision": None,
        "unembed_hash": tuned_lens_unembed_hash(lensbox.adapt(model)),
        "lens_type": "linear_tuned_lens",
    }
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_import_tuned_lens_library_format(model, other_model, tmp_path):
    lens = random_lens(model, seed=5)
    d = write_tuned_lens_dir(tmp_path / "peer", lens, model)
    imported = TunedLens.from_tuned_lens(d, model)
    assert imported.lens_sites == translator_sites(3)
    torch.testing.assert_close(imported.translators.weight, lens.translators.weight)
    tokens = model.to_tokens(TEXT[:40])
    ref = reference_kl(model, tokens, lens)
    res = imported(model, tokens)
    for s, kl in ref.items():
        torch.testing.assert_close(res.kl_final[0, res.sites.index(s)], kl, atol=2e-4, rtol=1e-4)
    assert imported.config["imported_from"]["library"] == "tuned-lens"
    # the unembedding hash catches a lens for another model of the same shape
    with pytest.raises(ModelError, match="unembedding"):
        TunedLens.from_tuned_lens(d, other_model)
    TunedLens.from_tuned_lens(d, other_model, check_fingerprint=False)
    # re-saved in lensbox's own format it loads back unchanged
    imported.save(tmp_path / "converted")
    back = TunedLens.load(tmp_path / "converted", model)
    torch.testing.assert_close(back.translators.bias, lens.translators.bias)


def test_import_rejects_bad_tuned_lens_dirs(model, tmp_path):
    with pytest.raises(ArtifactError, match="params.pt"):
        TunedLens.from_tuned_lens(tmp_path, model)
    d = write_tuned_lens_dir(tmp_path / "peer", random_lens(model), model)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 12
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="another model"):
        TunedLens.from_tuned_lens(d, model)

    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"0.weight": NotATensor()}, evil / "params.pt")
    (evil / "config.json").write_text(json.dumps({"d_model": 32, "num_hidden_layers": 3}))
    with pytest.raises(ArtifactError, match="plain tensors"):
        TunedLens.from_tuned_lens(evil, model)

    short = tmp_path / "short"
    short.mkdir()
    torch.save({"0.weight": torch.zeros(32, 32), "0.bias": torch.zeros(32)}, short / "params.pt")
    (short / "config.json").write_text(json.dumps({"d_model": 32, "num_hidden_layers": 3}))
    with pytest.raises(ArtifactError, match="lacks a translator"):
        TunedLens.from_tuned_lens(short, model)
    with pytest.raises(ArtifactError, match="from_tuned_lens"):
        TunedLens.load(short)
