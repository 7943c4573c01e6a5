"""Damaged or incomplete artifact JSON is an ArtifactError naming the field (issue 11, section 2).

The probe's fields, unknown keys included, are covered in tests/test_probe.py
(test_load_rejects_broken_artifacts); flipped weight bytes in test_tuned_lens.py, test_probe.py and
test_io.py (SHA-256). Here: the tuned lens's config.json.
"""

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from lensbox import ArtifactError
from lensbox.lenses import TunedLens


@pytest.fixture(scope="module")
def saved_lens(tiny_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return TunedLens.identity(tiny_lm).save(tmp_path_factory.mktemp("lens") / "lens", model=tiny_lm)


CASES: list[tuple[str, Callable[[dict], Any], str]] = [
    ("n_layers is text", lambda c: c.update(n_layers="abc"), r"field 'n_layers' is invalid(.|\n)*'abc'"),
    ("n_layers is a float", lambda c: c.update(n_layers=2.5), r"field 'n_layers' is invalid"),
    ("d_model missing", lambda c: c.pop("d_model"), r"field 'd_model' is invalid(.|\n)*missing"),
    ("sites missing", lambda c: c.pop("sites"), r"field 'sites' is invalid(.|\n)*missing"),
    ("sites a string", lambda c: c.update(sites="embed"), r"field 'sites' is invalid"),
    ("an unknown site", lambda c: c.update(sites=["resid_post.99"]), r"field 'sites' is invalid"),
]


@pytest.mark.parametrize(("case", "change", "message"), CASES, ids=[c[0] for c in CASES])
def test_damaged_lens_config_names_the_field(saved_lens: Path, tmp_path: Path, case: str, change: Any, message: str) -> None:
    lens = tmp_path / "lens"
    lens.mkdir()
    cfg = json.loads((saved_lens / "config.json").read_text(encoding="utf-8"))
    change(cfg)
    (lens / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (lens / "translators.safetensors").write_bytes((saved_lens / "translators.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match=message):
        TunedLens.load(lens)


def test_lens_config_that_is_a_json_list(saved_lens: Path, tmp_path: Path) -> None:
    lens = tmp_path / "lens"
    lens.mkdir()
    (lens / "config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"does not hold a JSON object(.|\n)*a JSON list"):
        TunedLens.load(lens)


def test_lens_config_without_its_fingerprint_is_refused_unless_asked(saved_lens: Path, tiny_lm: Any, tiny_tokens: Any, tmp_path: Path) -> None:
    """Deleting "fingerprint" from config.json does not switch the model check off."""
    import lensbox
    from lensbox import ModelError

    lens = tmp_path / "lens"
    lens.mkdir()
    cfg = json.loads((saved_lens / "config.json").read_text(encoding="utf-8"))
    del cfg["fingerprint"]
    (lens / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    (lens / "translators.safetensors").write_bytes((saved_lens / "translators.safetensors").read_bytes())
    with pytest.raises(ModelError, match=r"no model fingerprint(.|\n)*check_fingerprint=False"):
        TunedLens.load(lens, tiny_lm)
    with pytest.raises(ModelError, match="no model fingerprint"):
        lensbox.lenses.tuned_lens(tiny_lm, tiny_tokens, TunedLens.load(lens))
    forced = TunedLens.load(lens, tiny_lm, check_fingerprint=False)  # the user's explicit choice
    lensbox.lenses.tuned_lens(tiny_lm, tiny_tokens, forced)
