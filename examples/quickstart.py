"""Quickstart: run the logit lens on SmolLM2 and read its result.

Run it on its own with ``python examples/quickstart.py``; the documentation page
``docs/examples/quickstart.md`` runs the same sections while the site builds.
"""

# --8<-- [start:load]
import lensbox

model = lensbox.load_model()  # SmolLM2-135M-Instruct as a TransformerBridge, cached after the first call
print(model.cfg.n_layers, "layers, d_model", model.cfg.d_model, "vocabulary", model.cfg.d_vocab)
# --8<-- [end:load]

# --8<-- [start:lens]
result = lensbox.logit_lens(model, "The capital of France is")
print(result.table())
# --8<-- [end:lens]

# --8<-- [start:top]
for site in ["resid_post.20", "resid_post.26", "final"]:
    print(site, [(label, round(p, 3)) for label, p in result.top_tokens(site, -1)])
# --8<-- [end:top]

# --8<-- [start:heatmap]
import lensbox.plot

fig_heatmap = lensbox.plot.plot_heatmap(result, "top1")
# --8<-- [end:heatmap]

# --8<-- [start:kl]
kl = result.mean_over_positions("kl")  # mean KL(final || layer) per site, nats
fig_kl = lensbox.plot.plot_kl_by_layer(result, positions=slice(1, None))
# --8<-- [end:kl]

# --8<-- [start:pandas]
df = result.to_pandas()
print(df[df.pos == df.pos.max()][["site", "top1_token", "top1_prob", "kl_final", "entropy"]].tail(6).to_string(index=False))
# --8<-- [end:pandas]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "quickstart")
