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
probe.fit(model, [train_text], window=128, max_tokens=8_192, progress=False)   # small, so the site builds fast
print(probe)
# --8<-- [end:fit]

# --8<-- [start:evaluate]
evaluation = probe.evaluate(model, [held_out_text], window=128, max_tokens=2_048, progress=False)
print(evaluation.table())
# --8<-- [end:evaluate]

# --8<-- [start:figures]
fig_all = lensbox.plot.plot_probe_accuracy(evaluation.accuracy_table(buckets=["all"]))
fig_rare = lensbox.plot.plot_probe_accuracy(evaluation.rare_vs_frequent())
# --8<-- [end:figures]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "probes")
