"""train_tuned_lens: objective and gradient, least squares, determinism, checkpoints, bad data."""

import dataclasses
import hashlib
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

import lensbox
from lensbox import ArtifactError, InputError, NonFiniteError, Site
from lensbox.training import train_tuned_lens
from lensbox.training._lstsq import LstsqStats
from lensbox.training._objective import micro_batch_kl as _micro_batch_kl
from lensbox.training._objective import pair_mask as _pair_mask
from lensbox.training._objective import validation_kl
from lensbox.training._settings import RunPlan, lr_at
from lensbox.training._stream import WindowStream, raw_windows
from lensbox.lenses._tuned import Translators, TunedLens, translator_sites

from test_tuned_lens_models import TEXT, random_windows, tiny_model

FAST = dict(window=16, batch_size=4, val_fraction=0.0, progress=False, chunk_rows=64)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def data():
    return random_windows(24, 16, seed=1)


def random_translators(sites, d, seed=0, scale=0.2):
    tr = Translators(sites, d)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tr.weight.copy_(torch.randn(tr.weight.shape, generator=gen) * scale / math.sqrt(d))
        tr.bias.copy_(torch.randn(tr.bias.shape, generator=gen) * scale)
    return tr


# ------------------------------------------------------------------ the objective
def reference_loss(model, tr, streams, mask=None):
    """Mean KL(final || lens) over (site, position) pairs with plain autograd (full log_softmax)."""
    final = streams[Site.resid_post(2)].reshape(-1, 32)
    p_lp = (model.ln_final(final) @ model.W_U + model.b_U).log_softmax(-1)
    total, count = 0.0, 0
    for i, s in enumerate(tr.sites):
        h = streams[s].reshape(-1, 32)
        t = h + h @ tr.weight[i].T + tr.bias[i]
        lp = (model.ln_final(t) @ model.W_U + model.b_U).log_softmax(-1)
        kl = (p_lp.exp() * (p_lp - lp)).sum(-1)
        if mask is not None:
            kl = kl[mask[i]]
        total = total + kl.sum()
        count += kl.numel()
    return total / count


@pytest.mark.parametrize("use_mask", [False, True])
def test_chunked_kl_gradient_matches_autograd(model, use_mask):
    a = lensbox.adapt(model)
    sites = translator_sites(3)
    toks = random_windows(2, 12, seed=3)
    streams = a.run_and_capture(toks, sites + [Site.resid_post(2)])
    tr = random_translators(sites, 32)
    mask = _pair_mask(0, 0, 0, 24, len(sites), 2) if use_mask else None
    n_pairs = int(mask.sum()) if use_mask else 24 * len(sites)
    kl, cnt = _micro_batch_kl(a, tr, streams, mask=mask, weight=1.0 / n_pairs, chunk_rows=7, want_grad=True)
    got_w, got_b = tr.weight.grad.clone(), tr.bias.grad.clone()

    ref = random_translators(sites, 32)
    loss = reference_loss(model, ref, streams, mask)
    loss.backward()
    assert float(kl.sum() / cnt.sum()) == pytest.approx(float(loss.detach()), rel=1e-4)
    assert int(cnt.sum()) == n_pairs
    torch.testing.assert_close(got_w, ref.weight.grad, atol=1e-6, rtol=1e-3)
    torch.testing.assert_close(got_b, ref.bias.grad, atol=1e-6, rtol=1e-3)
    assert float(got_w.abs().max()) > 1e-4  # a real gradient, not zeros


def test_pair_mask_picks_k_sites_per_position():
    m = _pair_mask(5, 1, 0, 40, 7, 3)
    assert m.shape == (7, 40) and m.dtype == torch.bool
    assert (m.sum(0) == 3).all()
    assert torch.equal(m, _pair_mask(5, 1, 0, 40, 7, 3))
    assert not torch.equal(m, _pair_mask(6, 1, 0, 40, 7, 3))


def test_lr_schedules():
    s = RunPlan(sites=(), steps=10, batch_size=1, grad_accum=1, window=4, lr=1.0, schedule="cosine",
                warmup_steps=2, optimizer="adam", weight_decay=0.0, seed=0, val_fraction=0.0, max_val_tokens=0,
                init="identity", init_windows=0, train_windows=10, ridge=0.0, sites_per_token=None,
                shuffle_buffer=1, token_budget=None)
    assert [lr_at(i, s) for i in range(2)] == [0.5, 1.0]
    assert lr_at(2, s) == pytest.approx(1.0) and lr_at(9, s) < 0.05
    assert lr_at(6, dataclasses.replace(s, schedule="linear")) == pytest.approx(0.5)
    assert lr_at(9, dataclasses.replace(s, schedule="constant")) == 1.0


# ------------------------------------------------------------------ least squares
def test_lstsq_matches_torch_lstsq():
    gen = torch.Generator().manual_seed(0)
    S, n, d = 2, 300, 6
    H = torch.randn(S, n, d, generator=gen) * torch.linspace(0.5, 3, n)[None, :, None]
    F = torch.randn(n, d, generator=gen) * 2 + 1
    raw = LstsqStats(S, d, scale_invariant=False)
    raw.add(H[:, :100], F[:100])
    raw.add(H[:, 100:], F[100:])
    W, b = raw.solve(ridge=0.0)
    for s in range(S):
        X = torch.cat([H[s], torch.ones(n, 1)], 1).double()
        sol = torch.linalg.lstsq(X, F.double()).solution
        torch.testing.assert_close((torch.eye(d) + W[s].T).double(), sol[:d], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(b[s].double(), sol[d], atol=1e-4, rtol=1e-4)
    # scale-invariant: rows weighted by 1/rms(h), target f/rms(f)
    inv = LstsqStats(S, d, scale_invariant=True)
    inv.add(H, F)
    W2, b2 = inv.solve(ridge=0.0)
    rh = H[0].pow(2).mean(-1, keepdim=True).sqrt()
    rf = F.pow(2).mean(-1, keepdim=True).sqrt()
    X = (torch.cat([H[0], torch.ones(n, 1)], 1) / rh).double()
    sol = torch.linalg.lstsq(X, (F / rf).double()).solution
    torch.testing.assert_close((torch.eye(d) + W2[0].T).double(), sol[:d], atol=1e-4, rtol=1e-4)
    # ridge pulls towards the identity
    W3, b3 = inv.solve(ridge=1e6)
    assert float(W3.abs().max()) < 1e-3 and float(b3.abs().max()) < 1e-3


def test_lstsq_init_beats_identity_and_training_improves(model, data):
    a = lensbox.adapt(model)
    val = random_windows(4, 16, seed=9)
    ident = validation_kl(a, Translators(translator_sites(3), 32), val)
    lst = train_tuned_lens(model, data, steps=0, init="lstsq", init_tokens=24 * 16, **FAST)
    after_lstsq = validation_kl(a, lst.translators, val)
    assert all(x < y for x, y in zip(after_lstsq, ident)), (after_lstsq, ident)
    with pytest.warns(UserWarning, match="passes over them 2.00 times"):  # 48 windows asked, 24 in the data
        trained = train_tuned_lens(model, data, steps=12, init="identity", lr=3e-2, **FAST)
    after_train = validation_kl(a, trained.translators, val)
    assert sum(after_train) < 0.9 * sum(ident), (after_train, ident)
    curve = trained.config["loss_curve"]
    assert len(curve) == 12 and curve[-1][1] < curve[0][1]


# ------------------------------------------------------------------ determinism and batching
def test_deterministic_for_a_seed(model, data):
    kw = dict(steps=4, init="identity", lr=1e-2, sites_per_token=2, **FAST)
    a = train_tuned_lens(model, data, seed=3, **kw)
    b = train_tuned_lens(model, data, seed=3, **kw)
    c = train_tuned_lens(model, data, seed=4, **kw)
    assert torch.equal(a.translators.weight, b.translators.weight)
    assert not torch.equal(a.translators.weight, c.translators.weight)


def test_grad_accum_does_not_change_the_maths(model, data):
    kw = dict(FAST, batch_size=4)
    a = train_tuned_lens(model, data, steps=3, init="lstsq", lr=1e-2, grad_accum=1, **kw)
    b = train_tuned_lens(model, data, steps=3, init="lstsq", lr=1e-2, grad_accum=2, **kw)
    # Same maths, different float summation order: Adam turns that into a rare update of +-lr where a
    # gradient entry is ~0, so compare the bulk tightly and the worst entry against lr.
    diff = (a.translators.weight - b.translators.weight).detach().abs()
    assert float(diff.mean()) < 1e-6 and float(diff.max()) < 2e-2
    assert a.config["training"]["tokens_per_step"] == 64


def test_token_budget_and_metadata(model, data, capsys):
    # 100 tokens = 6 whole windows of 16 (4 tokens left over); batch 4: 1 step, 2 windows for the lstsq start only
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        lens = train_tuned_lens(model, data, token_budget=100, init="lstsq", lr=1e-3, **dict(FAST, progress=True))
    assert not [w for w in seen if "fewer than" in str(w.message)]  # the data holds enough windows: nothing cycles
    t, m = lens.config["training"], lens.config["metrics"]
    assert t["steps"] == 1 and t["train_windows"] == 6 and t["init_windows"] == 6 and t["token_budget"] == 100
    assert m["train_tokens"] == 64 and m["init_tokens"] == 96 and t["text_tokens"] == 96  # never more than asked
    assert any("last 4 tokens" in n for n in t["notes"]) and any("least-squares start only" in n for n in t["notes"])
    err = capsys.readouterr().err
    assert "training text: 6 windows x 16 tokens = 96 tokens (token_budget 100)" in err
    assert "least-squares start: 96 tokens" in err and "refinement: 1 steps x 4 windows = 64 tokens" in err
    assert "note: token_budget 100 is 6 whole windows of 16 = 96 tokens; the last 4 tokens" in err
    assert lens.config["corpus"]["kind"] == "token tensor"
    exact = train_tuned_lens(model, data, token_budget=128, init="lstsq", lr=1e-3, **FAST)
    assert exact.config["training"]["notes"] == [] and exact.config["metrics"]["train_tokens"] == 128
    with pytest.raises(InputError, match="not both"):
        train_tuned_lens(model, data, token_budget=100, steps=3, **FAST)
    with pytest.raises(InputError, match="multiple"):
        train_tuned_lens(model, data, steps=1, **dict(FAST, batch_size=3), grad_accum=2)
    with pytest.raises(InputError, match="counts toward"):
        train_tuned_lens(model, data, token_budget=64, init_tokens=128, **FAST)
    with pytest.raises(InputError, match="smaller than one window"):
        train_tuned_lens(model, data, token_budget=10, **FAST)


def test_short_text_warns_instead_of_cycling_silently(model, data):
    counted = []

    def counting(step, info):
        counted.append(step)

    # 24 windows in the data, 40 asked: the lstsq start reads the 24 once, the refinement warns and repeats
    with pytest.warns(UserWarning, match=r"holds 24 windows of 16 tokens \(384 tokens\).*fewer than the 40 windows"):
        lens = train_tuned_lens(model, data, token_budget=640, init="lstsq", lr=1e-3, callback=counting, **FAST)
    t = lens.config["training"]
    assert lens.config["metrics"]["init_tokens"] == 24 * 16 and t["data_windows"] == 24 and len(counted) == 10
    assert any("passes over them 1.67 times" in n for n in t["notes"])


def test_validation_tokens_are_recorded_and_printed(model, capsys):
    texts = [" ".join(f"w{i}" for i in range(k, k + 120)) for k in (0, 500, 900)]
    lens = train_tuned_lens(model, texts, steps=2, init="identity", lr=1e-3, window=32, batch_size=2,
                            val_fraction=0.3, max_val_tokens=64, progress=True)
    t, m = lens.config["training"], lens.config["metrics"]
    assert t["val_windows"] == 2 and t["val_tokens"] == m["val_tokens"] == 64
    err = capsys.readouterr().err
    assert "validation: 2 windows = 64 tokens held out (val_fraction 0.3, at most 64 tokens), never trained on" in err
    assert "on 64 held-out tokens" in err


def test_defaults_are_the_measured_fast_path():
    import inspect

    from lensbox.training import TrainSettings

    s = TrainSettings()
    assert (s.init, s.sites_per_token, s.batch_size, s.lr, s.schedule, s.optimizer) == ("lstsq", 4, 1, None, "cosine", "adam")
    sig = inspect.signature(train_tuned_lens).parameters
    for f in dataclasses.fields(TrainSettings):
        assert sig[f.name].default == getattr(s, f.name), f.name  # one set of defaults
    with pytest.raises((InputError, TypeError), match="schedule"):  # TypeError: the test run checks Literal types
        TrainSettings(schedule="step")


def test_validation_split_and_text_input(model, tmp_path):
    texts = [" ".join(f"w{i}" for i in range(k, k + 120)) for k in (0, 500, 900)]  # no repeated windows
    lens = train_tuned_lens(model, texts, steps=2, init="identity", lr=1e-3, window=32, batch_size=2,
                            val_fraction=0.3, max_val_tokens=64, progress=False)
    m = lens.config["metrics"]
    assert m["val_tokens"] == 64 and set(m["val_kl_per_site"]) == {"embed", "resid_post.0", "resid_post.1"}
    assert lens.config["corpus"]["texts"] == 3
    a = lensbox.adapt(model)
    stream = WindowStream(a, texts, window=32, seed=0, val_fraction=0.3, max_val_tokens=10**6, shuffle_buffer=4)
    every = [tuple(w) for w in raw_windows(a, texts, 32)]
    val = {tuple(w) for w in stream.val.tolist()}
    train = [tuple(w) for w in stream.epoch(0)]
    assert val and not (val & set(train)) and sorted(train + list(val)) == sorted(every)
    assert train != [w for w in every if w not in val]  # shuffled
    assert sorted(train) == sorted(tuple(w) for w in stream.epoch(1))
    # files give the same windows as the texts they hold (documents joined by EOS)
    for i, t in enumerate(texts):
        (tmp_path / f"doc{i}.txt").write_text(t, encoding="utf-8")
    from_files = [tuple(w) for w in raw_windows(a, [tmp_path / f"doc{i}.txt" for i in range(3)], 32)]
    from_dir = [tuple(w) for w in raw_windows(a, tmp_path, 32)]
    assert from_files == every == from_dir


def test_bad_training_data(model, tmp_path):
    with pytest.raises(InputError, match="shorter than one"):
        train_tuned_lens(model, ["tiny text"], steps=1, window=64, progress=False)
    with pytest.raises(InputError, match="shorter than one"):
        train_tuned_lens(model, torch.zeros(1, 10, dtype=torch.long), steps=1, window=16, progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        train_tuned_lens(model, [empty], steps=1, window=16, progress=False)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e ".encode("latin-1") * 20)
    with pytest.raises(InputError, match="UTF-8"):
        train_tuned_lens(model, [latin], steps=1, window=16, progress=False)
    with pytest.raises(InputError, match="does not exist"):
        train_tuned_lens(model, [tmp_path / "nope.txt"], steps=1, window=16, progress=False)
    with pytest.raises(InputError, match="more than once"):
        train_tuned_lens(model, (t for t in [TEXT * 5]), steps=1, window=16, progress=False)
    with pytest.raises(InputError, match="vocabulary"):
        train_tuned_lens(model, torch.full((4, 16), 999), steps=1, window=16, progress=False)
    # a factory of fresh iterators is fine
    lens = train_tuned_lens(model, lambda: iter([TEXT * 4]), steps=1, window=16, batch_size=1,
                            init="identity", val_fraction=0.0, progress=False)
    assert lens.config["training"]["steps"] == 1


# ------------------------------------------------------------------ checkpoints
def test_resume_after_a_crash_reproduces_the_run(model, data, tmp_path):
    kw = dict(steps=6, init="lstsq", lr=1e-2, checkpoint_every=2, sites_per_token=2, **FAST)
    whole = train_tuned_lens(model, data, checkpoint_dir=tmp_path / "a", **kw)

    class Crash(Exception):
        pass

    def crash_at_3(step, info):
        if step == 3:
            raise Crash()

    with pytest.raises(Crash):
        train_tuned_lens(model, data, checkpoint_dir=tmp_path / "b", callback=crash_at_3, **kw)
    state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert state["step"] == 2 and state["format"] == "lensbox.training_checkpoint" and "files" in state
    with pytest.raises(ArtifactError, match="resume"):
        train_tuned_lens(model, data, checkpoint_dir=tmp_path / "b", **kw)
    with pytest.raises(InputError, match="settings differ"):
        train_tuned_lens(model, data, checkpoint_dir=tmp_path / "b", resume=True, **dict(kw, lr=0.5))
    resumed = train_tuned_lens(model, data, checkpoint_dir=tmp_path / "b", resume=True, **kw)
    assert torch.equal(resumed.translators.weight, whole.translators.weight)
    assert torch.equal(resumed.translators.bias, whole.translators.bias)
    assert resumed.config["training"]["resumed"] is True
    assert [c[1] for c in resumed.config["loss_curve"]] == [c[1] for c in whole.config["loss_curve"]]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint.json", "state.safetensors"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not a lensbox checkpoint"):
        train_tuned_lens(model, data, checkpoint_dir=tmp_path / "mine", **kw)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(model, data, tmp_path):
    def poison(step, info):
        if step == 2:
            with torch.no_grad():
                info["translators"].weight.fill_(float("nan"))

    with pytest.raises(NonFiniteError, match="NaN"):
        train_tuned_lens(model, data, steps=5, init="identity", lr=1e-2, checkpoint_dir=tmp_path,
                         checkpoint_every=1, callback=poison, **FAST)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["step"] == 2
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "state.safetensors"))
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("lens."))
    # the run resumes from that checkpoint
    lens = train_tuned_lens(model, data, steps=5, init="identity", lr=1e-2, checkpoint_dir=tmp_path,
                            checkpoint_every=1, resume=True, **FAST)
    assert torch.isfinite(lens.translators.weight).all()


def test_corrupted_checkpoint_is_refused(model, data, tmp_path):
    train_tuned_lens(model, data, steps=2, init="identity", lr=1e-3, checkpoint_dir=tmp_path, checkpoint_every=1, **FAST)
    f = tmp_path / "state.safetensors"
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        train_tuned_lens(model, data, steps=2, init="identity", lr=1e-3, checkpoint_dir=tmp_path, resume=True, **FAST)


def test_resume_without_a_checkpoint_is_refused(model, data, tmp_path, monkeypatch):
    """resume=True on a missing or empty folder fails before any work; it never starts a new run."""
    monkeypatch.setattr(model, "run_with_hooks", None)  # any forward pass would fail with a TypeError
    for folder in (tmp_path / "typo", tmp_path):
        with pytest.raises(ArtifactError, match=r"Nothing to resume(.|\n)*drop resume=True"):
            train_tuned_lens(model, data, steps=1, init="identity", checkpoint_dir=folder, resume=True, **FAST)
    assert not (tmp_path / "typo").exists() and not list(tmp_path.iterdir())


def test_resume_on_other_data_is_refused(model, data, tmp_path):
    """The checkpoint records the SHA-256 of the data's token windows: other windows of the same shape, or
    the same windows in another order, are refused; the same data resumes."""
    kw = dict(steps=2, init="identity", lr=1e-3, checkpoint_every=1, **FAST)

    def stop_at_1(step, info):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_tuned_lens(model, data, checkpoint_dir=tmp_path, callback=stop_at_1, **kw)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    used = data[: 2 * FAST["batch_size"]]  # the run's training windows (steps x batch_size), no validation
    assert state["step"] == 1
    assert state["data_sha256"] == hashlib.sha256(used.numpy().astype("<i8").tobytes()).hexdigest()
    for other in (random_windows(24, 16, seed=2), data.flip(0)):
        with pytest.raises(InputError, match=r"training data differ from the checkpointed run(.|\n)*same texts"):
            train_tuned_lens(model, other, checkpoint_dir=tmp_path, resume=True, **kw)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 1  # left as it was
    lens = train_tuned_lens(model, data, checkpoint_dir=tmp_path, resume=True, **kw)
    assert lens.config["training"]["resumed"] is True


def test_warm_start_and_mid_sites(model, data):
    first = train_tuned_lens(model, data, steps=2, init="lstsq", lr=1e-3, include_mid=True, **FAST)
    assert Site.resid_mid(2) in first.lens_sites
    second = train_tuned_lens(model, data, steps=0, init=first, **FAST)
    assert torch.equal(second.translators.weight, first.translators.weight)
    assert second.lens_sites == first.lens_sites
