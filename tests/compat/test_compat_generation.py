"""Runs in every environment: what to_hooked_transformer does depends on the TransformerLens generation."""

import importlib.metadata

import pytest

from lensbox import ModelError
from lensbox.models._convert import to_hooked_transformer

from compat_models import hooked_transformer_class, tiny_llama


def test_generation_decides_whether_conversion_is_possible():
    major = int(importlib.metadata.version("transformer-lens").split(".")[0])
    HookedTransformer = hooked_transformer_class()
    assert (HookedTransformer is not None) == (major < 4)
    if HookedTransformer is None:
        with pytest.raises(ModelError) as info:
            to_hooked_transformer(tiny_llama())
        assert "TransformerBridge" in str(info.value)
    else:
        assert isinstance(to_hooked_transformer(tiny_llama()), HookedTransformer)
