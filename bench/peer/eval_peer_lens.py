"""Held-out KL(final || lens) per layer for a tuned-lens 0.2.0 lens, and for the logit lens.

Runs in .venvs/tuned-lens (it needs the tuned_lens package to rebuild the lens).

For every held-out window (256 tokens, fed alone, nothing prepended) the HF model is run
once with ``output_hidden_states=True``.  Layer ``i`` (0..n_layers-1) is the residual
stream entering block ``i`` (``hidden_states[i]``; 0 is the embedding output), which is
what tuned-lens's translator ``i`` reads.  For each layer:

    KL_i(pos) = sum_v p_final(v) * (log p_final(v) - log p_lens(v))        [nats]

with p_final = softmax(model logits) and p_lens = softmax(lens logits).  The logit lens
is computed directly as ``lm_head(norm(h))``.  Statistics are float32 and computed one
(window, layer) at a time, so at most [256, vocab] is held.  The reported value is the
mean over all held-out positions.

Usage::

    .venvs/tuned-lens/bin/python bench/peer/eval_peer_lens.py \
        --model-dir DIR --lens-dir DIR --windows windows.json --out eval.json
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM
from tuned_lens.nn.lenses import TunedLens


def kl_rows(final_lp: torch.Tensor, lens_logits: torch.Tensor) -> torch.Tensor:
    """KL(final || lens) for each row of [pos, vocab] log-probs / logits, in nats."""
    lens_lp = lens_logits.float().log_softmax(-1)
    return (final_lp.exp() * (final_lp - lens_lp)).sum(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--lens-dir", required=True)
    ap.add_argument("--windows", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-windows", type=int, default=None, help="evaluate only the first N windows (smoke tests)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    lens = TunedLens.from_model_and_pretrained(model, args.lens_dir).eval()
    held = json.loads(args.windows.read_text())["heldout"][: args.max_windows]
    n_layers = model.config.num_hidden_layers
    if len(lens) != n_layers:
        raise SystemExit(f"lens has {len(lens)} translators, model has {n_layers} layers")

    norm, head = model.model.norm, model.lm_head
    sum_tuned = torch.zeros(n_layers, dtype=torch.float64)
    sum_logit = torch.zeros(n_layers, dtype=torch.float64)
    n_pos = 0
    max_final_gap = 0.0
    with torch.inference_mode():
        for window in held:
            ids = torch.tensor([window])
            out = model(input_ids=ids, output_hidden_states=True)
            final_lp = out.logits[0].float().log_softmax(-1)
            hs = out.hidden_states  # n_layers + 1 entries; the last one is already normed
            # Sanity: the logit lens on the last block's output reproduces the model's logits.
            last = head(hs[-1][0])
            max_final_gap = max(max_final_gap, (last - out.logits[0]).abs().max().item())
            for i in range(n_layers):
                h = hs[i][0]
                sum_tuned[i] += kl_rows(final_lp, lens(h, idx=i)).double().sum()
                sum_logit[i] += kl_rows(final_lp, head(norm(h))).double().sum()
            n_pos += len(window)

    kl_tuned = (sum_tuned / n_pos).tolist()
    kl_logit = (sum_logit / n_pos).tolist()
    result = {
        "heldout_tokens": n_pos,
        "kl_per_layer_tuned": kl_tuned,
        "kl_per_layer_logit": kl_logit,
        "mean_kl_tuned": sum(kl_tuned) / n_layers,
        "mean_kl_logit": sum(kl_logit) / n_layers,
        "lens_param_dtype": str(next(lens.parameters()).dtype),
        "final_logits_check_max_abs": max_final_gap,
        "eval_wall_s": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("kl_per")}))


if __name__ == "__main__":
    main()
