"""Reading the logit-lens heatmap: the top-1, rank and KL views of one passage."""

# --8<-- [start:run]
import lensbox
import lensbox.plot

model = lensbox.load_model()
text = (
    "Language models are trained to predict the next word. We trained a small model "
    "with one hundred million parameters and tested it on questions about history."
)
result = lensbox.logit_lens(model, text)
print(result)  # the repr: shape, sites and the top-1 table
# --8<-- [end:run]

# --8<-- [start:top1]
window = (result.tokens.shape[1] - 10, result.tokens.shape[1])  # the last 10 positions (readable at page width)
fig_top1 = lensbox.plot.plot_heatmap(result, "top1", positions=window)
# --8<-- [end:top1]

# --8<-- [start:rank]
fig_rank = lensbox.plot.plot_heatmap(result, "final_rank", positions=window)
# --8<-- [end:rank]

# --8<-- [start:kl]
fig_kl = lensbox.plot.plot_heatmap(result, "kl", positions=window)
# --8<-- [end:kl]

# --8<-- [start:logit]
fig_logit = lensbox.plot.plot_heatmap(result, "logit", positions=window)
# --8<-- [end:logit]

# --8<-- [start:numbers]
import torch

body = slice(1, None)  # leave out position 0, the start token
agree = (result.final_top1_rank[0, :, body] == 0).float().mean(-1)       # share of cells agreeing with the final top-1
median_rank = result.final_top1_rank[0, :, body].float().median(-1).values
mean_kl = result.kl_final[0, :, body].mean(-1)
targets = result.tokens[0, 1:]
right = (result.final_top1[0, :-1] == targets)                          # the (*) marks
# --8<-- [end:numbers]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "heatmap")
