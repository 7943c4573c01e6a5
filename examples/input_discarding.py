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

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "input_discarding")
