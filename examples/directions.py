"""Directions and magnitude: residual norms, cosine vs dot-product decoding, confidence vs norm, a token-plane path."""

# --8<-- [start:norms]
import torch
import lensbox
import lensbox.plot

model = lensbox.load_model()
prompt = "When Mary and John went to the store, John gave a drink to"
norms = lensbox.residual_norms(model, prompt)          # ‖resid‖ per site and position, before any norm
fig_norms = lensbox.plot.plot_residual_norms(norms)
# --8<-- [end:norms]

# --8<-- [start:cosine]
# Decode every site two ways: dot product with W_U (the logit lens) and cosine similarity
# (every unembedding column scaled to length 1, so only direction counts).
adapter = lensbox.adapt(model)
tokens = adapter.to_tokens(prompt)
sites = adapter.sites()                                  # embed + every resid_post
streams = adapter.run_and_capture(tokens, sites)
W_U = adapter.W_U.detach().float()
W_U_unit = W_U / W_U.norm(dim=0, keepdim=True)
agreement, normed_norm, raw_norm, top1_prob = [], [], [], []
with torch.no_grad():
    for site in sites:                                   # one [pos, vocab] buffer at a time
        h = streams[site][0].float()
        x = adapter.final_norm(h).float()
        dot = x @ W_U + adapter.b_U.float()
        cos = x @ W_U_unit
        agreement.append((dot.argmax(-1) == cos.argmax(-1)).float())
        raw_norm.append(h.norm(dim=-1))
        normed_norm.append(x.norm(dim=-1))
        top1_prob.append(dot.softmax(-1).max(-1).values)
agreement, raw_norm, normed_norm, top1_prob = (torch.stack(t) for t in (agreement, raw_norm, normed_norm, top1_prob))
print("share of positions where cosine and dot-product top-1 agree, per site:")
print(" ".join(f"{float(a):.2f}" for a in agreement.mean(1)))
# --8<-- [end:cosine]

# --8<-- [start:scale]
# Same direction, different length: scale the final layer's normed vector at the last position.
x_last = adapter.final_norm(streams[sites[-1]][0, -1]).float().detach()
for alpha in [0.25, 0.5, 1.0, 2.0, 4.0]:
    p = (alpha * x_last @ W_U + adapter.b_U.float()).softmax(-1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum()
    print(f"length x{alpha:<4}  top-1 {adapter.token_label(int(p.argmax()))!r:10} p = {float(p.max()):.3f}  entropy = {float(entropy):.2f} nats")
# --8<-- [end:scale]

# --8<-- [start:trajectory]
traj = lensbox.token_plane_trajectory(model, prompt, (" Mary", " John"))
fig_plane = lensbox.plot.plot_trajectory(traj)
# --8<-- [end:trajectory]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "directions")
