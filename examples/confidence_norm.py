"""Confidence against norm: does a longer residual stream mean a more confident lens?"""

# --8<-- [start:run]
import lensbox
import lensbox.plot

model = lensbox.load_model()
text = (
    "The river rose all night, and by morning the lower streets of the town were under water. "
    "People carried their furniture upstairs, and the baker handed out bread from an upper window."
)
result = lensbox.logit_lens(model, text)
norms = lensbox.residual_norms(model, text)              # the same sites: embeddings + every block output
fig_conf = lensbox.plot.plot_confidence_vs_norm(result, norms)
data = lensbox.plot.confidence_norm_data(result, norms)  # the plotted numbers, one entry per cell
print(f"{len(data['norm'])} cells: {len(result.sites)} sites x {result.tokens.shape[1] - 1} positions")
# --8<-- [end:run]

# --8<-- [start:corr]
import numpy as np


def spearman(a, b):
    ra, rb = a.argsort().argsort().astype(float), b.argsort().argsort().astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


overall = spearman(data["norm"], data["top1_prob"])
per_site = [
    spearman(data["norm"][data["site_index"] == i], data["top1_prob"][data["site_index"] == i])
    for i in range(1, len(result.sites))                   # each block output on its own
]
print(f"Spearman(norm, top-1 probability) over all cells: {overall:.2f}")
print(f"within one site (block outputs): median {np.median(per_site):.2f}, range {min(per_site):.2f} .. {max(per_site):.2f}")
# --8<-- [end:corr]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "confidence_norm")
