"""A multilingual prompt: which script do the middle layers decode to?"""

# --8<-- [start:run]
import unicodedata

import lensbox
import lensbox.plot

model = lensbox.load_model()
prompts = {
    "Russian": "Москва является столицей России, а Париж является столицей Франции.",
    "Chinese": "北京是中国的首都，巴黎是法国的首都。",
    "English": "Moscow is the capital of Russia, and Paris is the capital of France.",
}
results = {lang: lensbox.logit_lens(model, text) for lang, text in prompts.items()}


def script(label: str) -> str:
    """The writing system of a token label: Cyrillic, CJK, Latin, or other (spaces, punctuation, digits)."""
    for ch in label:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if "CYRILLIC" in name:
                return "Cyrillic"
            if "CJK" in name or "HIRAGANA" in name or "KATAKANA" in name:
                return "CJK"
            if "LATIN" in name:
                return "Latin"
    return "other"


for lang, result in results.items():
    print(lang, "input scripts:", {s: sum(script(t) == s for t in result.input_labels[0][1:]) for s in ("Cyrillic", "CJK", "Latin", "other")})
# --8<-- [end:run]

# --8<-- [start:shares]
import torch

def script_shares(result):
    """Per site: share of top-1 guesses (start token left out) in each script."""
    names = ("Cyrillic", "CJK", "Latin", "other")
    shares = torch.zeros(len(result.sites), len(names))
    for i in range(len(result.sites)):
        guesses = [cell[0] for cell in result.top_labels[0][i][1:]]
        for j, name in enumerate(names):
            shares[i, j] = sum(script(g) == name for g in guesses) / len(guesses)
    return names, shares

shares = {lang: script_shares(r)[1] for lang, r in results.items()}
# --8<-- [end:shares]

# --8<-- [start:figures]
import matplotlib.pyplot as plt

names = ("Cyrillic", "CJK", "Latin", "other")
fig_scripts, axes = plt.subplots(1, len(results), figsize=(12, 3.4), sharey=True)
for ax, (lang, share) in zip(axes, shares.items()):
    ax.stackplot(range(share.shape[0]), share.T.numpy(), labels=names)
    ax.set_title(f"{lang} prompt")
    ax.set_xlabel("site (0 = embed)")
axes[0].set_ylabel("share of top-1 guesses")
axes[-1].legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
fig_ru = lensbox.plot.plot_heatmap(results["Russian"], "top1", positions=10)
fig_zh = lensbox.plot.plot_heatmap(results["Chinese"], "top1", positions=10)
# --8<-- [end:figures]

if __name__ == "__main__":
    import _support

    _support.save_figures(globals(), "multilingual")
