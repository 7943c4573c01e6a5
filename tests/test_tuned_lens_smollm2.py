"""On the real SmolLM2-135M: a short tuned-lens training run lowers held-out KL at every layer."""

import pytest

import lensbox
from lensbox.data import fetch_corpus, read_texts
from lensbox.lenses._evaluate import evaluate
from lensbox.training._train import train_tuned_lens


@pytest.mark.smollm2
def test_short_training_lowers_heldout_kl():
    model = lensbox.load_model(progress=False)
    text = read_texts(fetch_corpus("botchan", progress=False))[0]
    body = text[: text.index("*** END OF")]  # the novel, without Project Gutenberg's licence
    train_text, heldout_text = body[10_000:40_000], body[-12_000:]
    lens = train_tuned_lens(
        model, [train_text], steps=1, batch_size=1, window=128, init="lstsq", init_tokens=12 * 128, lr=1e-4,
        sites_per_token=4, val_fraction=0.0, progress=False,
    )
    assert lens.config["metrics"]["init_tokens"] == 12 * 128
    ev = evaluate(model, [heldout_text], {"logit": "logit", "tuned": lens}, window=128, max_tokens=256,
                  progress=False)
    logit, tuned = ev.values["logit"]["kl"], ev.values["tuned"]["kl"]
    assert ev.tokens == 256
    assert ev.mean("logit") > 5.0  # the logit lens reads SmolLM2's middle layers badly
    assert ev.mean("tuned") < 0.5 * ev.mean("logit"), (ev.mean("tuned"), ev.mean("logit"))
    for site, a, b in zip(ev.sites[:-1], tuned[:-1], logit[:-1]):
        assert a < b, (site, a, b)
    agree = ev.values["tuned"]["top1_agree"]
    # measured: summed over the 30 layers, 10.8 (tuned) against 5.9 (logit lens)
    assert sum(agree[:-1]) > 1.4 * sum(ev.values["logit"]["top1_agree"][:-1])
