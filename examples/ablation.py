"""Ablating an attention head with fwd_hooks: at which layer does the logit lens lose the answer?"""

# --8<-- [start:setup]
import torch
import lensbox
import lensbox.plot

model = lensbox.load_model()
prompt = "The capital of France is"
adapter = lensbox.adapt(model)
tokens = adapter.to_tokens(prompt)
with torch.no_grad():
    base = model(tokens).log_softmax(-1)[0, -1]
answer = int(base.argmax())
print(f"{prompt!r} -> {adapter.token_label(answer)!r} (p = {float(base[answer].exp()):.2f})")
# --8<-- [end:setup]

# --8<-- [start:scan]
# Which head matters? Zero each head's output (its slice of hook_z) and measure the answer's
# log-prob. Row h of a batch of n_heads copies of the prompt has head h zeroed, so one
# forward pass per block tries all of its heads. We scan the first SCAN blocks (to keep the page fast).
SCAN = 4
n_heads = model.cfg.n_heads
drop = torch.zeros(SCAN, n_heads)


def zero_head_per_row(z, hook):          # z: [batch, pos, head, d_head]
    z = z.clone()
    for h in range(n_heads):
        z[h, :, h] = 0.0
    return z


with torch.no_grad():
    for layer in range(SCAN):
        logp = model.run_with_hooks(
            tokens.repeat(n_heads, 1), fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head_per_row)]
        ).log_softmax(-1)[:, -1, answer]
        drop[layer] = base[answer] - logp
layer, head = divmod(int(drop.argmax()), n_heads)
print(f"largest drop: head {layer}.{head}, {float(drop.max()):.2f} nats")
# --8<-- [end:scan]

# --8<-- [start:lens]
def zero_head(z, hook):
    z = z.clone()
    z[:, :, head] = 0.0                  # head `head` of block `layer` writes nothing
    return z


# Append the answer so that the next-token statistics at the last prompt position track it.
with_answer = torch.cat([tokens, torch.tensor([[answer]], device=tokens.device)], dim=1)
plain = lensbox.logit_lens(model, with_answer)
ablated = lensbox.logit_lens(model, with_answer, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
pos = tokens.shape[1] - 1                # the last prompt position: it predicts the answer
fig_logprob = lensbox.plot.plot_layer_metric(
    {"plain run": plain, f"head {layer}.{head} ablated": ablated}, "logprob", positions=[pos], band=False,
    title=f"log-prob of {adapter.token_label(answer)!r} at the last prompt position, per layer",
)
# --8<-- [end:lens]

if __name__ == "__main__":
    import _support

    print(ablated.table(metric="rank", max_positions=3))
    _support.save_figures(globals(), "ablation")
