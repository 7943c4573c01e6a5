"""Our own start-up shim for running the tuned-lens 0.2.0 CLI in .venvs/tuned-lens.

Python imports ``sitecustomize`` at start-up from any directory on PYTHONPATH, so
``PYTHONPATH=bench/peer/shim`` activates this file.  It does nothing unless
``LENSBOX_PEER_SHIM=1``.  Each change is switched by an environment variable:

- always (with LENSBOX_PEER_SHIM=1): drop the ``load_in_8bit=`` keyword that the CLI
  passes to ``AutoModelForCausalLM.from_pretrained``; transformers 5 rejects it.  A
  true value (``--precision int8``) is refused loudly instead of silently ignored.
- ``LENSBOX_PEER_FP32=1``: the training loop wraps each lens loss in a bfloat16
  ``autocast``; on this CPU that is about 2x slower than float32, so the loop's view of
  ``autocast`` is replaced by a disabled one (the lens then trains in float32).
- ``LENSBOX_PEER_WINDOWS=path.json``: the CLI's dataset step (``Data.load``) returns the
  pre-tokenised training windows in that file (written by prepare_peer_data.py) instead
  of tokenising and chunking text itself, so tuned-lens trains on exactly the token
  windows our own trainer uses.
  ``LENSBOX_PEER_SPLIT=heldout`` picks the held-out windows instead (for the CLI's
  ``eval`` command, used as a cross-check of our own KL computation).
- ``LENSBOX_PEER_TIMING=path.json``: record wall-clock stamps (setup done, training loop
  done) so the training loop can be timed apart from model loading.
"""

import os

if os.environ.get("LENSBOX_PEER_SHIM") == "1":
    import json
    import math
    import time
    import types

    import transformers

    _auto_fp = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def _from_pretrained_without_8bit(cls, *args, **kwargs):
        if kwargs.pop("load_in_8bit", False):
            raise ValueError("peer shim: int8 loading is not supported under transformers 5; use --precision float32")
        if "torch_dtype" in kwargs and "dtype" not in kwargs:  # the new spelling, avoids a warning
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        return _auto_fp(cls, *args, **kwargs)

    transformers.AutoModelForCausalLM.from_pretrained = classmethod(_from_pretrained_without_8bit)

    import torch
    import tuned_lens.scripts.ingredients as _ing
    import tuned_lens.scripts.train_loop as _train

    if os.environ.get("LENSBOX_PEER_FP32") == "1":

        def _no_autocast(device_type, *args, **kwargs):
            kwargs["enabled"] = False
            return torch.autocast(device_type, *args, **kwargs)

        # A stand-in for the `torch` name inside train_loop only: same module, except
        # that `autocast` always comes back disabled.
        class _TorchView(types.ModuleType):
            def __getattr__(self, name):
                return getattr(torch, name)

        _torch_view = _TorchView("torch")
        _torch_view.autocast = _no_autocast
        _train.th = _torch_view

    _windows_file = os.environ.get("LENSBOX_PEER_WINDOWS")
    if _windows_file:
        from datasets import Dataset

        def _load_windows(self, tokenizer):
            payload = json.loads(open(_windows_file, encoding="utf-8").read())
            split = os.environ.get("LENSBOX_PEER_SPLIT", "train")
            windows = payload[split]
            meta = payload["meta"]
            if any(len(w) != self.max_length for w in windows):
                raise ValueError(f"peer shim: windows must be {self.max_length} tokens (--max_length); got {meta['window']}")
            n_tokens = sum(len(w) for w in windows)
            # Only used for logging by tuned-lens: tokens per byte / ln 2.
            nats_to_bpb = n_tokens / meta[f"{split}_bytes"] / math.log(2)
            print(f"peer shim: {len(windows)} pre-tokenised {split} windows of {self.max_length} tokens from {_windows_file}")
            ds = Dataset.from_dict({"input_ids": windows}).with_format("torch", columns=["input_ids"])
            return ds, nats_to_bpb

        _ing.Data.load = _load_windows

    _timing_file = os.environ.get("LENSBOX_PEER_TIMING")
    if _timing_file:
        # wall-clock stamps and this process's CPU seconds (all threads) at each point
        _stamps = {"process_start": time.time(), "cpu_process_start": time.process_time()}

        def _dump():
            with open(_timing_file, "w", encoding="utf-8") as fh:
                json.dump(_stamps, fh)

        _orig_setup = _train.Train.setup
        _orig_execute = _train.Train.execute

        def _timed_setup(self):
            out = _orig_setup(self)
            _stamps["setup_done"] = time.time()
            _stamps["cpu_setup_done"] = time.process_time()
            _dump()
            return out

        def _timed_execute(self):
            out = _orig_execute(self)  # includes lens.save(), a few ms
            _stamps["execute_done"] = time.time()
            _stamps["cpu_execute_done"] = time.process_time()
            _dump()
            return out

        _train.Train.setup = _timed_setup
        _train.Train.execute = _timed_execute
