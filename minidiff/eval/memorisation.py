"""Memorisation: are generated digits new, or copies of training digits? (lesson 19)

A model that has learned the data *distribution* draws digits that are as far from the training
set as fresh digits of the same distribution are; a model that has learned the training *set*
draws near-copies of it. So compare two sets of nearest-neighbour distances to the training set:

    d(x) = min_{x' ∈ train} ‖f(x) − f(x')‖          (Euclidean; f = the pixels, or classifier features φ)
    d_gen  = d(s)  for the generated samples s
    d_test = d(x)  for held-out test digits x (never seen in training)

and the statistic

    share = (1/n) Σ_s 1[ d(s) < min_{x ∈ test} d(x) ]

the fraction of samples closer to a training digit than *any* held-out digit is. If the samples
were fresh draws from the data distribution, each d(s) and the n_test values d(x) would be
exchangeable, and d(s) would be the smallest of the n_test + 1 with probability 1/(n_test + 1):
that is the share of a model that does not memorise (`null_share`). A share far above it means
many samples sit closer to the training set than real unseen digits ever do: memorisation.

Contents: `nearest_neighbours`, `memorisation_share`, `null_share`.
"""

from __future__ import annotations

import torch

from ..utils import check_float, check_positive_int


def _rows(name: str, x) -> torch.Tensor:
    check_float(name, x)
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch (N, ...) of images or feature vectors, got {tuple(x.shape)}")
    return x.flatten(1)


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor,
                       batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the Euclidean distance to its nearest reference row and that row's index.

    queries (N, ...) and reference (M, ...) are flattened to vectors (images or features alike) and
    compared in float64, `batch_size` queries against 8192 reference rows at a time (memory stays small
    with all 60 000 training digits). Returns (distances (N,) float64, indices (N,) long).
    """
    q, r = _rows("queries", queries), _rows("reference", reference)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} numbers per row but reference has {r.shape[1]}: "
                         "compare like with like (both images or both features)")
    check_positive_int("batch_size", batch_size)
    dists, idx = [], []
    for i in range(0, q.shape[0], batch_size):
        qb = q[i:i + batch_size].double()
        best = torch.full((qb.shape[0],), float("inf"), dtype=torch.float64, device=qb.device)
        arg = torch.zeros(qb.shape[0], dtype=torch.long, device=qb.device)
        for j in range(0, r.shape[0], 8192):
            m = torch.cdist(qb, r[j:j + 8192].double()).min(dim=1)
            better = m.values < best  # strict: the first of equal neighbours wins, as in a single min
            best = torch.where(better, m.values, best)
            arg = torch.where(better, m.indices + j, arg)
        dists.append(best)
        idx.append(arg)
    return torch.cat(dists), torch.cat(idx)


def memorisation_share(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> dict:
    """The memorisation statistic: the share of samples closer to the training set than every test digit is.

    Returns a dict: share (float), threshold = min d_test, d_gen (n,), d_test (n_test,) float64 tensors,
    nearest (n,) the index of each sample's nearest training row, and null = 1 / (n_test + 1).
    """
    d_gen, nearest = nearest_neighbours(samples, train)
    d_test, _ = nearest_neighbours(test, train)
    threshold = d_test.min()
    return {"share": float((d_gen < threshold).double().mean()), "threshold": float(threshold),
            "d_gen": d_gen, "d_test": d_test, "nearest": nearest, "null": null_share(d_test.shape[0])}


def null_share(n_test: int) -> float:
    """E[share] when samples are fresh draws of the data distribution: 1 / (n_test + 1)."""
    return 1.0 / (check_positive_int("n_test", n_test) + 1)
