"""Copying a rare token: the "plasma" prompt from the logit-lens post, on SmolLM2."""

# --8<-- [start:run]
import lensbox
import lensbox.plot

model = lensbox.load_model()
prompt = "Sometimes, when people say plasma, they mean a state of matter. Other times, when people say plasma"
result = lensbox.logit_lens(model, prompt)
labels = result.input_labels[0]
print(labels)
# --8<-- [end:run]

# --8<-- [start:heatmaps]
fig_top1 = lensbox.plot.plot_heatmap(result, "top1", positions=8)  # the last 8 positions
fig_rank = lensbox.plot.plot_heatmap(result, "rank", positions=8)  # rank of the true next token
# --8<-- [end:heatmaps]

# --8<-- [start:copy]
# The second " say" is where the model has to produce " plasma" again.
say_positions = [i for i, t in enumerate(labels) if t == "␣say"]
copy_pos = say_positions[-1]
rank_plasma = result.next_rank[0, :, copy_pos]            # rank of " plasma" at every site (0-based: 0 = top-1)
prob_plasma = result.next_logprob[0, :, copy_pos].exp()
for i in sorted(set(range(0, len(result.sites), 3)) | {len(result.sites) - 1}):
    print(f"{result.sites[i].name:14s} rank {int(rank_plasma[i]) + 1:6d}   p = {float(prob_plasma[i]):.4f}")  # printed 1-based
# --8<-- [end:copy]

# --8<-- [start:keep]
# Is the FIRST " plasma" kept around? result.input_rank: the rank of each position's own (input) token
# under each site's decoding, computed in the same pass as the other statistics (0 = top-1).
input_rank = result.input_rank[0]                         # [site, pos]
ids = result.tokens[0]
first_plasma = labels.index("␣plasma")
others = [p for p in range(1, len(ids)) if p != first_plasma]
# --8<-- [end:keep]

# --8<-- [start:keepfig]
import matplotlib.pyplot as plt

fig_keep, ax = plt.subplots(figsize=(7, 3.6))
x = range(len(result.sites))
ax.plot(x, input_rank[:, first_plasma] + 1, marker="o", label='first " plasma" (its own token)')
ax.plot(x, input_rank[:, others].float().median(1).values + 1, marker=".", label="median of the other positions")
ax.set_yscale("log")
ax.set_xticks(list(x)[::3], [s.name.replace("resid_post.", "") for s in result.sites][::3])
ax.set_xlabel("site (embed, then block outputs)")
ax.set_ylabel("rank of the input token (1 = top)")
ax.legend()
# --8<-- [end:keepfig]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "rare_token")
