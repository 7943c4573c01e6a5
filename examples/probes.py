"""Input-reconstruction probes: can a linear map read the input tokens back out of each layer?"""

# --8<-- [start:fit]
import lensbox
import lensbox.plot
from lensbox import InputProbe, fetch_corpus, read_texts

model = lensbox.load_model()
novel = read_texts(fetch_corpus("botchan"))[0]
cut = int(len(novel) * 0.9)
train_text, held_out_text = novel[:cut], novel[cut:]

sites = ["embed"] + [f"resid_post.{i}" for i in range(0, 30, 4)] + ["final"]
probe = InputProbe(sites=sites, offsets=(0, -1, 1))        # this token, the one before, the next one
fit = dict(window=128, max_tokens=4_096)                    # small, so the site builds fast

# The fitted probe is kept in lensbox's cache under a key made of the model's weights, the text
# and the settings, so a rebuild reuses it; a cached probe that cannot be read is fitted again.
from _support import artifact_key

saved = lensbox.cache_dir() / "docs" / f"probe-{artifact_key(model, train_text, dict(fit, sites=sites, offsets=probe.offsets))}"
try:
    probe = InputProbe.load(saved, model)
except Exception:  # not cached yet, or written by another lensbox version, damaged, unreadable
    probe.fit(model, [train_text], progress=False, **fit)
    try:
        probe.save(saved, overwrite=True)
    except Exception:  # a read-only or full cache only costs the next build the fit
        pass
print(probe)
# --8<-- [end:fit]

# --8<-- [start:evaluate]
# Predictions are decoded over the tokens seen in training (candidates="seen"), 16x fewer than the vocabulary.
evaluation = probe.evaluate(model, [held_out_text], window=128, max_tokens=1_024, candidates="seen", progress=False)
print(evaluation.table())
# --8<-- [end:evaluate]

# --8<-- [start:figures]
fig_all = lensbox.plot.plot_probe_accuracy(evaluation.accuracy_table(buckets=["all"]))
fig_rare = lensbox.plot.plot_probe_accuracy(evaluation.rare_vs_frequent())
# --8<-- [end:figures]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "probes")
