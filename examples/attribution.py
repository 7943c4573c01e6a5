"""Direct logit attribution on an indirect-object prompt: which heads push " Mary" over " John"?"""

# --8<-- [start:attribute]
import lensbox
import lensbox.plot

model = lensbox.load_model()
prompt = "When Mary and John went to the store, John gave a drink to"
res = lensbox.logit_attribution(model, prompt, target=" Mary", minus=" John")
print(res.table(-1, n=8, heads=True))
# --8<-- [end:attribute]

# --8<-- [start:figures]
fig_heads = res.plot("heads", position=-1, title="logit(' Mary') - logit(' John') by head, last position")
fig_bars = res.plot("bar", position=-1, heads=False, title="logit(' Mary') - logit(' John') by layer")
# --8<-- [end:figures]

# --8<-- [start:ablate]
import torch

heads = res.heads[0, -1]                                   # [layer, head] at the last position
order = torch.argsort(heads.flatten(), descending=True)
top3 = [(int(i) // heads.shape[1], int(i) % heads.shape[1]) for i in order[:3]]


def zero_heads(layer_heads):
    """fwd_hooks that zero these heads' z (so their output z @ W_O is zero) at the last position."""
    hooks = []
    for layer, head in layer_heads:
        def hook(z, hook=None, head=head):
            z = z.clone()
            z[:, -1, head] = 0.0
            return z
        hooks.append((f"blocks.{layer}.attn.hook_z", hook))
    return hooks


ablated = lensbox.logit_attribution(model, prompt, target=" Mary", minus=" John", fwd_hooks=zero_heads(top3))
print("top-3 heads:", ", ".join(f"head.{l}.{h}" for l, h in top3))
print(f"logit difference: {float(res.logit[0, -1]):+.3f} -> {float(ablated.logit[0, -1]):+.3f} with them zeroed")
# --8<-- [end:ablate]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "attribution")
