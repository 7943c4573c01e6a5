"""On the real SmolLM2-135M: offset-0 probes at early layers read the input token back far above the majority guess."""

import pytest

import lensbox
from lensbox.data import fetch_corpus, read_texts
from lensbox.probes import InputProbe


@pytest.mark.smollm2
def test_offset0_probes_beat_majority_at_early_layers():
    model = lensbox.load_model(progress=False)
    text = read_texts(fetch_corpus("botchan", progress=False))[0]
    train_text, heldout_text = text[10_000:60_000], text[-8_000:]
    probe = InputProbe(["embed", "resid_post.0", "resid_post.2"], offsets=(0, -1))
    probe.fit(model, [train_text], window=128, max_tokens=12 * 128, progress=False)
    assert probe.training["n_tokens"] == 12 * 128
    ev = probe.evaluate(model, [heldout_text], window=128, max_tokens=3 * 128, progress=False)
    ridge = ev.accuracy("ridge_cos")
    majority = ev.accuracy("majority")
    z = ev.offsets.index(0)
    for si, site in enumerate(ev.sites):
        assert float(ridge[si, z]) > float(majority[si, z]) + 0.3, (site, float(ridge[si, z]), float(majority[si, z]))
    # the embeddings hold the token itself: nearly every held-out token is read back
    assert float(ridge[ev.sites.index(lensbox.Site.embed()), z]) > 0.8
    # the ridge prediction points towards the true embedding
    assert float(ev.cos_true[0, z]) > 0.5
