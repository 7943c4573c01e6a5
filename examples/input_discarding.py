"""Input discarding: compare every layer with the input-layer distribution and with the final one."""

# --8<-- [start:run]
import lensbox
import lensbox.plot

model = lensbox.load_model()
text = (
    "The committee met on Tuesday to discuss the budget, the schedule, and the new library, "
    "which had been closed since the flood."
)
result = lensbox.logit_lens(model, text)
fig_views = lensbox.plot.plot_compare_views(result)   # the last positions that fit the page, one view above the other
# --8<-- [end:run]

# --8<-- [start:curves]
import matplotlib.pyplot as plt

body = slice(1, None)                                  # leave out the start token
kl_final = result.kl_final[0, :, body].mean(-1)        # KL(final || layer), mean over positions
kl_input = result.kl_input[0, :, body].mean(-1)        # KL(input || layer)
fig_curves, ax = plt.subplots(figsize=(7, 3.8))
x = list(range(len(result.sites)))
ax.plot(x, kl_final.numpy(), marker=".", label="KL(final ‖ layer): compare with the output")
ax.plot(x, kl_input.numpy(), marker=".", label="KL(input ‖ layer): compare with the input")
ax.set_xticks(x[::3], [s.name.replace("resid_post.", "") for s in result.sites][::3])
ax.set_xlabel("site (embed, then block outputs)")
ax.set_ylabel("mean KL over positions, nats")
ax.legend()
# --8<-- [end:curves]

# --8<-- [start:inputrank]
# The post's second view of the addendum: the rank of the input token (the token AT each position)
# under each layer's decoding, with the colours bottoming out at rank 1000 instead of 100.
fig_input_rank = lensbox.plot.plot_heatmap(result, "input_rank", vmax=1000,
                                           title="rank of the input token (colour floor at rank 1000)")
input_rank = result.input_rank[0, :, body] + 1          # 1-based, [site, pos], start token left out
within_1000 = (input_rank <= 1000).float().mean(-1)     # share of positions whose input token is in the top 1000
median_rank = input_rank.float().median(-1).values
fig_rank_curve, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(x, median_rank.clamp(max=1000).numpy(), marker=".", label="median rank of the input token (clipped at 1000)")
ax.set_yscale("log")
ax.set_ylim(0.8, 1300)
ax.axhline(1000, color="grey", linewidth=0.8, linestyle=":")
ax.set_xticks(x[::3], [s.name.replace("resid_post.", "") for s in result.sites][::3])
ax.set_xlabel("site (embed, then block outputs)")
ax.set_ylabel("rank (1 = top)")
ax.legend()
# --8<-- [end:inputrank]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "input_discarding")
