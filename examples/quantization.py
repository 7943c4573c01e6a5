"""What quantization does to lens statistics: the default Q4_1 model against coarser re-quantized copies."""

# --8<-- [start:model]
import copy

import torch
import lensbox
from lensbox.lenses import kl_divergence, log_softmax

model = lensbox.load_model()
print(model.cfg.model_name)
# --8<-- [end:model]

# --8<-- [start:quantize]
def round_bfloat16(w):
    """Round every weight to the nearest bfloat16 (8 bits of mantissa)."""
    return w.to(torch.bfloat16).to(w.dtype)


def symmetric_blocks(bits, block=32):
    """Symmetric round-to-nearest in blocks of `block` weights along each row: 2**(bits-1) - 1 levels each side,
    one scale per block (max |w| of the block); zero maps to zero."""
    levels = 2 ** (bits - 1) - 1

    def quantize(w):
        rows = w.reshape(-1, block)                    # every 2-D weight here has rows divisible by 32
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / levels
        return ((rows / scale).round().clamp(-levels, levels) * scale).reshape(w.shape)

    return quantize


def requantized(model, quantize):
    """A deep copy of the model with every matrix (embeddings, attention, MLP) passed through `quantize`;
    norm gains (1-D) stay as they are. Tied embeddings stay tied: each parameter is visited once."""
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        for p in copy_.parameters():
            if p.ndim == 2:
                p.copy_(quantize(p))
    return copy_


variants = {
    "bfloat16 rounding": round_bfloat16,
    "4-bit symmetric, blocks of 32": symmetric_blocks(4),
    "3-bit symmetric, blocks of 32": symmetric_blocks(3),
}
# --8<-- [end:quantize]

# --8<-- [start:compare]
text = (
    "The old lighthouse keeper climbed the stairs every evening to light the lamp. Ships far out at sea "
    "watched for its beam, and on foggy nights he rang the bell until morning."
)
tokens = model.to_tokens(text)
base = lensbox.logit_lens(model, tokens)
with torch.no_grad():
    base_out = log_softmax(model(tokens)[0])                      # the model's own next-token log-probs
rows = {}
for name, quantize in variants.items():
    other = requantized(model, quantize)
    changed = sum(int((p != q).sum()) for p, q in zip(model.parameters(), other.parameters()))
    result = lensbox.logit_lens(other, tokens)
    with torch.no_grad():
        out = log_softmax(other(tokens)[0])
    rows[name] = dict(
        result=result,
        weights_changed=changed / sum(p.numel() for p in model.parameters()),
        output_kl=kl_divergence(base_out, out)[1:],              # KL(Q4_1 model || variant) per position
        output_top1=(base_out.argmax(-1) == out.argmax(-1))[1:].float().mean(),
    )
    del other
    print(f"{name:32s} weights changed {rows[name]['weights_changed']:.1%}   "
          f"output KL {float(rows[name]['output_kl'].mean()):.4f} nats   same top-1 {float(rows[name]['output_top1']):.1%}")
# --8<-- [end:compare]

# --8<-- [start:figure]
import matplotlib.pyplot as plt

body = slice(1, None)
fig_kl, ax = plt.subplots(figsize=(7, 3.6))
x = range(len(base.sites))
ax.plot(x, base.kl_final[0, :, body].mean(-1).numpy(), color="black", linewidth=2, label="Q4_1, dequantized (default)")
for name, row in rows.items():
    ax.plot(x, row["result"].kl_final[0, :, body].mean(-1).numpy(), marker=".", label=name)
ax.set_yscale("log")
ax.set_xticks(list(x)[::3], [s.name.replace("resid_post.", "") for s in base.sites][::3])
ax.set_xlabel("site (embed, then block outputs)")
ax.set_ylabel("mean KL(final ‖ layer), nats")
ax.legend(fontsize=8)
# --8<-- [end:figure]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "quantization")
