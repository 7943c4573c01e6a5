"""The sub-block view: decode each attention and MLP output on its own, and find which one first produces the answer."""

# --8<-- [start:setup]
import torch
import lensbox
import lensbox.plot

model = lensbox.load_model()
prompt = "The capital of France is"
adapter = lensbox.adapt(model)
tokens = adapter.to_tokens(prompt)
with torch.no_grad():
    answer = int(model(tokens)[0, -1].argmax())
# Append the answer: the next-token statistics at the last prompt position then track it.
tokens = torch.cat([tokens, torch.tensor([[answer]], device=tokens.device)], dim=1)
pos = tokens.shape[1] - 2
print(f"{prompt!r} -> {adapter.token_label(answer)!r}")
# --8<-- [end:setup]

# --8<-- [start:own]
# Each sub-block's output decoded as if it were a residual stream (the logit-lens post's view),
# beside the logit lens on the residual stream itself (after attention: resid_mid, after the MLP: resid_post).
own = lensbox.component_lens(model, tokens, norm="own", k=5)
stream = lensbox.logit_lens(model, tokens, include_mid=True)
late = [c.name for c in own.components if c.layer is not None and c.layer >= 22]
print(lensbox.component_lens(model, tokens, sites=late, norm="own", k=3).table(pos=pos, k=3, width=10))
# --8<-- [end:own]

# --8<-- [start:frozen]
# The same outputs with the final norm's scale frozen at the final stream's: linear, so they add up.
frozen = lensbox.component_lens(model, tokens, norm="frozen", k=5)
with torch.no_grad():
    model_logit = float(model(tokens)[0, pos, answer])
w, b = adapter.final_norm_affine()
with torch.no_grad():
    leftover = float((b @ adapter.W_U.float() + adapter.b_U.float())[answer])   # the norm's bias and b_U
total = float(frozen.next_logit[0, :, pos].sum()) + leftover
print(f"sum of the components' logits for the answer + bias term = {total:.4f}; the model's logit = {model_logit:.4f}")
blocks = [c.name for c in frozen.components if c.layer is not None and c.layer >= 18]
fig_components = lensbox.plot.plot_components(
    lensbox.component_lens(model, tokens, sites=blocks, norm="frozen"), "next_logit", positions=slice(1, None),
    title="frozen-norm logit of the next input token, blocks 18-29, after the start token (cell: the token each output promotes most)",
)
# --8<-- [end:frozen]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "components")
