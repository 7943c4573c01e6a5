"""Attractor tokens: why the embeddings row of the logit lens is filled with the same few tokens."""

# --8<-- [start:symptom]
import torch
import lensbox

model = lensbox.load_model()
adapter = lensbox.adapt(model)
prompt = "Sometimes, when people say plasma, they mean a state of matter. Other times, when people say plasma"
result = lensbox.logit_lens(model, prompt, sites="embed")      # the embeddings row (and the final one)
labels = result.input_labels[0]
for p in range(1, 9):
    token, prob = result.top_tokens("embed", p)[0]
    print(f"{labels[p]!r:14} -> {token!r:14} p = {prob:.3f}")
# --8<-- [end:symptom]

# --8<-- [start:sample]
# Decode a sample of the vocabulary's own input vectors, as the lens does at the embeddings
# (final norm, then the unembedding), two ways: dot products (the lens) and cosine similarity
# (every unembedding column scaled to length 1, so only direction counts).
W_E = adapter.W_E.detach().float()            # [vocab, d_model]
W_U = adapter.W_U.detach().float()            # [d_model, vocab]
col_norm = W_U.norm(dim=0)                    # ‖u_t‖, the length of each token's unembedding column
W_U_unit = W_U / col_norm
ids = torch.arange(0, W_E.shape[0], 32)       # every 32nd token id
dot_top, cos_top = [], []
with torch.no_grad():
    for chunk in ids.split(512):              # a [512, vocab] buffer at a time
        x = adapter.final_norm(W_E[chunk]).float()
        dot_top.append((x @ W_U + adapter.b_U.float()).argmax(-1))
        cos_top.append((x @ W_U_unit).argmax(-1))
dot_top, cos_top = torch.cat(dot_top), torch.cat(cos_top)
winners, wins = dot_top.unique(return_counts=True)
order = wins.argsort(descending=True)
attractors = [int(winners[i]) for i in order[:5]]
print(f"{len(ids):,} tokens decoded; own token on top: dot {float((dot_top == ids).float().mean()):.3f}, "
      f"cosine {float((cos_top == ids).float().mean()):.3f}")
for t in attractors:
    print(f"{adapter.token_label(t)!r:14} wins {int((dot_top == t).sum()):5d} by dot, {int((cos_top == t).sum()):3d} by cosine")
# --8<-- [end:sample]

# --8<-- [start:norms]
median_norm = col_norm.median()
norm_rank = col_norm.argsort(descending=True).argsort()        # 0 = the longest column
for t in attractors:
    print(f"{adapter.token_label(t)!r:14} ‖u‖ = {float(col_norm[t]):.2f} ({float(col_norm[t] / median_norm):.2f}x the median, "
          f"longest rank {int(norm_rank[t]) + 1} of {len(col_norm):,})")
# --8<-- [end:norms]

# --8<-- [start:split]
# One cell taken apart: logit = ‖x‖ ‖u_t‖ cos(x, u_t). ‖x‖ is shared by every token, so the
# ranking is by ‖u_t‖ cos(x, u_t): a long column with a middling angle beats a short one that is
# well aligned.
plasma = labels.index("␣plasma")
winner = int(result.top_ids[0, 0, plasma, 0])
own = int(result.tokens[0, plasma])
with torch.no_grad():
    x = adapter.final_norm(W_E[own]).float()
rows = {}
for name, t in (("the token itself", own), ("the lens's top-1", winner)):
    cos = float(x @ W_U[:, t] / (x.norm() * col_norm[t]))
    rows[name] = (adapter.token_label(t), float(col_norm[t]), cos, float(x @ W_U[:, t]))
    print(f"{name:17} {rows[name][0]!r:14} ‖u‖ = {rows[name][1]:.2f}  cos = {rows[name][2]:.3f}  logit = {rows[name][3]:.1f}")
# --8<-- [end:split]

# --8<-- [start:figure]
import matplotlib.pyplot as plt

win_counts = torch.zeros(len(col_norm))
win_counts.index_add_(0, dot_top, torch.ones(len(dot_top)))
fig_norms, ax = plt.subplots(figsize=(7, 3.6))
ax.hist(col_norm.numpy(), bins=120, color="#9aa5b1")
for t in attractors[:3]:
    ax.axvline(float(col_norm[t]), color="#c0392b", linewidth=1)
    ax.annotate(adapter.token_label(t), (float(col_norm[t]), 1), rotation=90, fontsize=8, color="#c0392b",
                xytext=(3, 10), textcoords="offset points")
ax.axvline(float(median_norm), color="black", linestyle="--", linewidth=1)
ax.set_yscale("log")
ax.set_xlabel("‖u_t‖, length of a token's unembedding column (dashed: median)")
ax.set_ylabel("tokens")
# --8<-- [end:figure]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "attractor_tokens")
