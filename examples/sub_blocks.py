"""Sub-blocks and decoder variants: after attention vs after the MLP, and the last-blocks decoder."""

# --8<-- [start:mid]
import lensbox
import lensbox.plot

model = lensbox.load_model()
text = (
    "The Eiffel Tower is in Paris, the Colosseum is in Rome, and the Brandenburg Gate is in Berlin. "
    "The Statue of Liberty is in New York, and Big Ben is in"
)
mid = lensbox.logit_lens(model, text, include_mid=True)   # embed, resid_mid.0, resid_post.0, resid_mid.1, ...
print(len(mid.sites), "sites:", ", ".join(s.name for s in mid.sites[:5]), "...", mid.sites[-1].name)
# --8<-- [end:mid]

# --8<-- [start:first]
# At each position: the first site from which the lens's top-1 is the model's final top-1 and stays so.
body = range(1, mid.tokens.shape[1])                         # leave out the start token
agrees = mid.final_top1_rank[0] == 0                         # [site, pos]: top-1 equals the final top-1
first_site = {}
for p in body:
    col = agrees[:, p].tolist()
    i = len(col)
    while i > 0 and col[i - 1]:
        i -= 1
    first_site[p] = mid.sites[i]                             # the final site itself agrees by definition
kinds = [first_site[p].kind.value for p in body]
print({k: kinds.count(k) for k in sorted(set(kinds))})
# --8<-- [end:first]

# --8<-- [start:split]
# Where does KL(final || layer) fall: across attention (resid_pre -> resid_mid) or across the MLP (mid -> post)?
kl = mid.kl_final[0, :, 1:].mean(-1)                         # mean over positions, per site
index = {s: i for i, s in enumerate(mid.sites)}
n_layers = model.cfg.n_layers
drop_attn, drop_mlp = [], []
for layer in range(n_layers):
    before = index[lensbox.Site.embed()] if layer == 0 else index[lensbox.Site.resid_post(layer - 1)]
    m, after = index[lensbox.Site.resid_mid(layer)], index[lensbox.Site.resid_post(layer)]
    drop_attn.append(float(kl[before] - kl[m]))
    drop_mlp.append(float(kl[m] - kl[after]))
fig_mid = lensbox.plot.plot_kl_by_layer({"logit lens, after attention and after the MLP": mid}, positions=slice(1, None))

import matplotlib.pyplot as plt

fig_split, ax = plt.subplots(figsize=(7, 3.4))
blocks = range(1, n_layers)                                   # block 0's drop (tens of nats) would dwarf the rest
ax.bar([b - 0.2 for b in blocks], drop_attn[1:], width=0.4, label="attention (resid_pre → resid_mid)")
ax.bar([b + 0.2 for b in blocks], drop_mlp[1:], width=0.4, label="MLP (resid_mid → resid_post)")
ax.axhline(0, color="black", linewidth=0.6)
ax.set_xlabel("block")
ax.set_ylabel("drop in mean KL(final ‖ layer), nats")
ax.legend(fontsize=8)
# --8<-- [end:split]

# --8<-- [start:decoders]
# The post's decoder variant: run the last K blocks on an intermediate stream before decoding.
sites = [lensbox.Site.embed()] + [lensbox.Site.resid_post(i) for i in range(0, n_layers, 4)]
results = {"logit lens": lensbox.logit_lens(model, text, sites=sites)}
for k in (1, 2, 4):
    results[f"last {k} block(s)"] = lensbox.logit_lens(model, text, sites=sites, decoder=f"last_blocks:{k}")
fig_decoders = lensbox.plot.plot_kl_by_layer(results, positions=slice(1, None))
for name, r in results.items():
    print(f"{name:18s} {r.decoder}")
# --8<-- [end:decoders]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "sub_blocks")
