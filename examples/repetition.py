"""A repetition loop: where in the network is the repetition noticed?"""

# --8<-- [start:run]
import lensbox
import lensbox.plot

model = lensbox.load_model()
unit = " The cat sat on the mat and looked at the door."
n_repeats = 5
result = lensbox.logit_lens(model, unit * n_repeats)
unit_len = len(model.to_tokens(unit, prepend_bos=False)[0])
n_pos = result.tokens.shape[1]
print(f"{n_pos} positions: the start token, then {n_repeats} copies of {unit_len} tokens")
# --8<-- [end:run]

# --8<-- [start:accuracy]
# Top-1 accuracy of each site on the true next token, separately for each copy of the sentence.
correct = result.next_rank[0] == 0                      # [site, pos]; the last position has rank -1 (no target)
accuracy = []                                           # accuracy[r][site]
for r in range(n_repeats):
    cols = [p for p in range(1 + r * unit_len, 1 + (r + 1) * unit_len) if p < n_pos - 1]
    accuracy.append(correct[:, cols].float().mean(1))
for r, acc in enumerate(accuracy):
    print(f"copy {r + 1}: " + " ".join(f"{float(a):.1f}" for a in acc[::3]))
# --8<-- [end:accuracy]

# --8<-- [start:figures]
import matplotlib.pyplot as plt

fig_accuracy, ax = plt.subplots(figsize=(7, 3.8))
x = list(range(len(result.sites)))
for r, acc in enumerate(accuracy):
    ax.plot(x, acc.numpy(), marker=".", label=f"copy {r + 1}")
ax.set_xticks(x[::3], [s.name.replace("resid_post.", "") for s in result.sites][::3])
ax.set_xlabel("site (embed, then block outputs)")
ax.set_ylabel("top-1 accuracy on the next token")
ax.legend()
fig_rank = lensbox.plot.plot_heatmap(result, "rank", positions=unit_len + 1, label_chars=6)  # 6-character labels: 13 positions fit
# --8<-- [end:figures]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "repetition")
