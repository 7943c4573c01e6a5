"""Next-token alignment: why position i predicts token i + 1, and why generation reads only the last position."""

# --8<-- [start:logits]
import torch
import lensbox

model = lensbox.load_model()
text = "The quick brown fox jumps over the lazy dog"
tokens = model.to_tokens(text)  # [1, n], the start token first
with torch.no_grad():
    logits = model(tokens)  # [1, n, vocab]: one next-token distribution per input position
print("tokens", tuple(tokens.shape), "-> logits", tuple(logits.shape))
# --8<-- [end:logits]

# --8<-- [start:table]
labels = [model.tokenizer.decode([t]) for t in tokens[0].tolist()]
guess = logits[0].argmax(-1).tolist()
rows = []
for i in range(tokens.shape[1]):
    target = labels[i + 1] if i + 1 < tokens.shape[1] else "(not yet written)"
    rows.append((i, repr(labels[i]), repr(model.tokenizer.decode([guess[i]])), repr(target)))
for row in rows:
    print("pos {:2d}  input {:12s}  predicts {:12s}  actual next {}".format(*row))
# --8<-- [end:table]

# --8<-- [start:causal]
# Causal masking: the distribution at position k - 1 depends only on tokens 0..k-1,
# so running the prefix alone gives the same numbers as the full run.
k = 5
with torch.no_grad():
    prefix_logits = model(tokens[:, :k])
diff = (prefix_logits[0, -1] - logits[0, k - 1]).abs().max().item()
print(f"prefix of {k} tokens: last-position logits vs position {k - 1} of the full run, max |difference| = {diff:.2e}")
# --8<-- [end:causal]

# --8<-- [start:generate]
# Greedy generation: each step reads only the LAST position's distribution.
context = tokens
steps = []
with torch.no_grad():
    for _ in range(6):
        step_logits = model(context)               # [1, len, vocab]: len distributions ...
        next_id = step_logits[0, -1].argmax()      # ... of which only the last one is new information
        steps.append(model.tokenizer.decode([int(next_id)]))
        context = torch.cat([context, next_id.view(1, 1)], dim=1)
print("greedy continuation:", repr("".join(steps)))
# --8<-- [end:generate]

# --8<-- [start:lens]
import lensbox.plot

result = lensbox.logit_lens(model, tokens)
fig_alignment = lensbox.plot.plot_heatmap(result, "next_prob", sites=["embed", "resid_post.10", "resid_post.20", "resid_post.25", "resid_post.28", "final"])
# --8<-- [end:lens]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "alignment")
