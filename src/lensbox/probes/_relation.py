"""How a fitted probe's weights relate to the model's embedding ``W_E`` and unembedding ``W_U``.

Principal angles between each probe's input subspace (the top left singular vectors of its
weight) and the top singular subspaces of ``W_E`` and ``W_U``, computed from small Gram
matrices so a tall ``W_E`` costs ``O(V d^2)``.
"""

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from ..core import ModelLike, adapt
from ..core._sites import Site
from ._probe import InputProbe


def top_singular_subspace(matrix: Float[Tensor, "a b"], rank: int, *, side: Literal["left", "right"]) -> Float[Tensor, "dim r"]:
    """Orthonormal basis of the top-``rank`` singular subspace on one side of ``matrix``.

    ``side='left'`` spans columns (``a``-dimensional), ``side='right'`` spans rows (``b``-dimensional).
    Uses the eigendecomposition of the small Gram matrix, so a tall ``W_E`` costs ``O(V d^2)``.
    """
    m = matrix.detach().double()
    gram = m @ m.T if side == "left" else m.T @ m
    evals, evecs = torch.linalg.eigh(gram)
    r = min(int(rank), evecs.shape[1])
    return evecs[:, -r:].flip(-1).float()


def principal_angle_cosines(a: Float[Tensor, "d r"], b: Float[Tensor, "d s"]) -> Float[Tensor, "q"]:
    """Cosines of the principal angles between the column spans of orthonormal ``a`` and ``b``."""
    return torch.linalg.svdvals(a.double().T @ b.double()).float()


def embedding_relation(
    probe: InputProbe,
    model: ModelLike,
    *,
    rank: int = 64,
    sites: Sequence[Site] | None = None,
) -> list[dict[str, Any]]:
    """How each fitted probe relates to the model's ``W_E`` and ``W_U``.

    For every (kind, site, offset): the probe's input subspace is the span of the top-``r``
    left singular vectors of its weight (the residual directions it reads). Reported:

    * ``mean_cos2_W_E`` / ``mean_cos2_W_U``: mean squared cosine of the principal angles
      between that subspace and the top-``r`` singular subspace of ``W_E`` (its rows) and
      ``W_U`` (its columns); ``chance`` = r / d_model is the expectation for a random subspace;
    * ``energy_in_W_E_top``: the share of the weight's squared norm lying in ``W_E``'s top-``r``
      subspace (chance r / d_model as well);
    * softmax only: ``class_cos_W_E`` / ``class_cos_W_U``, the mean cosine between the
      probe's weight column for a token and that token's ``W_E`` row / ``W_U`` column.
    """
    adapter = adapt(model)
    probe.require_fitted()
    d = adapter.d_model
    r = max(1, min(int(rank), d // 2))
    W_E = adapter.W_E.detach().float()
    W_U = adapter.W_U.detach().float()
    q_e = top_singular_subspace(W_E, r, side="right")
    q_u = top_singular_subspace(W_U, r, side="left")
    chance = r / d
    wanted = set(sites) if sites is not None else set(probe.fitted_sites)
    rows: list[dict[str, Any]] = []
    items: list[tuple[str, Site, int, Tensor, Tensor | None]] = []
    for (s, k), p in probe.ridge.items():
        items.append(("ridge", s, k, p.weight, None))
    for (s, k), p in probe.softmax.items():
        items.append(("softmax", s, k, p.weight, p.classes))
    for kind, s, k, weight, classes in items:
        if s not in wanted:
            continue
        w = weight.to(q_e.device).float()
        q_p = top_singular_subspace(w, r, side="left")
        cos_e = principal_angle_cosines(q_p, q_e)
        cos_u = principal_angle_cosines(q_p, q_u)
        energy = float((q_e.T @ w).pow(2).sum() / w.pow(2).sum().clamp_min(1e-30))
        row: dict[str, Any] = {
            "kind": kind,
            "site": s.name,
            "layer_depth": s.depth,
            "offset": k,
            "rank": r,
            "chance": round(chance, 5),
            "mean_cos2_W_E": round(float(cos_e.pow(2).mean()), 5),
            "mean_cos2_W_U": round(float(cos_u.pow(2).mean()), 5),
            "max_cos_W_E": round(float(cos_e.max()), 5),
            "energy_in_W_E_top": round(energy, 5),
        }
        if classes is not None:
            cls = classes.to(W_E.device)
            cols = w.T  # [classes, d]
            row["class_cos_W_E"] = round(float(torch.nn.functional.cosine_similarity(cols, W_E[cls], dim=-1).mean()), 5)
            row["class_cos_W_U"] = round(float(torch.nn.functional.cosine_similarity(cols, W_U.T[cls], dim=-1).mean()), 5)
        rows.append(row)
    return rows
