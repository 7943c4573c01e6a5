"""The test suite's own setup: the jaxtyping + beartype hook is active (also in pytest-xdist workers)."""

import os

import torch


def test_type_checking_hook_is_active() -> None:
    from lensbox.core._sites import parse_sites

    assert hasattr(parse_sites, "__wrapped__"), "run pytest from the repository root (pyproject addopts)"


def test_one_torch_thread_per_xdist_worker() -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        assert torch.get_num_threads() == 1
