"""Tied embeddings: decoding with W_E^T against W_U, and what Q&A sites ask about them."""

# --8<-- [start:tied]
import torch
import lensbox

model = lensbox.load_model()
adapter = lensbox.adapt(model)
W_E = adapter.W_E.detach()   # [vocab, d_model]: row t is token t's input vector
W_U = adapter.W_U.detach()   # [d_model, vocab]: column t scores token t on the way out
print("config says tied:", model.original_model.config.tie_word_embeddings)
print("W_U equals W_E transposed:", torch.equal(W_U, W_E.T))
# --8<-- [end:tied]

# --8<-- [start:decoders]
prompt = "The quick brown fox jumps over the lazy dog. Meanwhile, the cat sleeps on the warm sofa."
by_unembed = lensbox.logit_lens(model, prompt)                      # final norm + W_U (default)
by_embed_t = lensbox.logit_lens(model, prompt, decoder="embed_t")   # final norm + W_E^T
print(by_unembed.decoder, "|", by_embed_t.decoder)
print("largest KL difference between the two lenses:", float((by_unembed.kl_final - by_embed_t.kl_final).abs().max()))
# --8<-- [end:decoders]

# --8<-- [start:self]
# Does a token's own input vector, read back through W_E^T, point at the token itself?
ids = torch.arange(0, W_E.shape[0], 16)                     # every 16th token id (3,072 tokens)
with torch.no_grad():
    raw = W_E[ids] @ W_E.T                                    # plain dot products with every token
    normed = adapter.final_norm(W_E[ids]) @ W_E.T             # what the logit lens does at the embed site
self_top1_raw = (raw.argmax(-1) == ids).float().mean()
self_top1_normed = (normed.argmax(-1) == ids).float().mean()
self_rank_normed = (normed > normed.gather(1, ids.view(-1, 1))).sum(1)
print(f"own token is top-1: raw {self_top1_raw:.3f}, after the final norm {self_top1_normed:.3f}")
# --8<-- [end:self]

# --8<-- [start:norms]
import matplotlib.pyplot as plt

norms = W_E.norm(dim=-1)
fig_norms, ax = plt.subplots(figsize=(7, 3.4))
ax.hist(norms.numpy(), bins=120)
ax.set_xlabel("‖W_E[t]‖ (norm of a token's embedding row)")
ax.set_ylabel("tokens")
ax.set_yscale("log")
# --8<-- [end:norms]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "tied_embeddings")
