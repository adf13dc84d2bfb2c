"""Precision, recall and class coverage of generated samples (lesson 18).

FID folds quality and coverage into one number. Kynkäänniemi et al. (2019), "Improved Precision and
Recall Metric for Assessing Generative Models", separate them with k-nearest neighbours in a feature
space (here the course classifier's features, `minidiff.eval.classifier.extract_features`):

    r_k(φ)    = distance from φ to its k-th nearest neighbour in its own set (itself excluded)
    manifold  = the union of the balls B(φ_i, r_k(φ_i)) around every point φ_i of a set
    precision = fraction of generated features inside the manifold of the real ones   (quality)
    recall    = fraction of real features inside the manifold of the generated ones   (coverage)

A generator that draws only perfect "1"s has precision near 1 and recall near 0.1. The class
histogram of the samples (by the classifier) gives a coarser coverage number: its total-variation
distance to the uniform 1/10, TV = ½ Σ_c |p_c − 1/10|, is 0 for balanced classes and 0.9 for one class.
"""

from __future__ import annotations

import torch

from ..utils import check_positive_int


def _check_features(name: str, f) -> torch.Tensor:
    if not isinstance(f, torch.Tensor) or not f.is_floating_point() or f.dim() != 2:
        raise ValueError(f"{name} must be a float tensor (N, D) of features, got "
                         f"{getattr(f, 'dtype', type(f).__name__)} {tuple(getattr(f, 'shape', ()))}")
    return f


def knn_radii(features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """r_k of every row: the distance to its k-th nearest other row (N,). Needs N > k."""
    f = _check_features("features", features)
    check_positive_int("k", k)
    if f.shape[0] <= k:
        raise ValueError(f"need more than k = {k} features to find k neighbours, got {f.shape[0]}")
    d = torch.cdist(f, f)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (distance 0)


def in_manifold(points: torch.Tensor, support: torch.Tensor, k: int = 3) -> torch.Tensor:
    """For each row of `points`, True when it lies in some ball B(s_j, r_k(s_j)) of the support set."""
    p, s = _check_features("points", points), _check_features("support", support)
    if p.shape[1] != s.shape[1]:
        raise ValueError(f"points and support must have the same feature dimension, got {p.shape[1]} and {s.shape[1]}")
    radii = knn_radii(s, k)
    return (torch.cdist(p, s) <= radii[None, :]).any(dim=1)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of Kynkäänniemi et al. (2019) with k nearest neighbours, on features (N, D)."""
    precision = in_manifold(fake, real, k).double().mean().item()
    recall = in_manifold(real, fake, k).double().mean().item()
    return precision, recall


def class_tv(histogram: torch.Tensor) -> float:
    """Total-variation distance ½ Σ_c |p_c − 1/C| of a class histogram (C,) to the uniform one."""
    if not isinstance(histogram, torch.Tensor) or histogram.dim() != 1 or not histogram.is_floating_point():
        raise ValueError(f"histogram must be a float tensor (C,), got {getattr(histogram, 'shape', type(histogram).__name__)}")
    p = histogram / histogram.sum()
    return 0.5 * (p - 1.0 / p.numel()).abs().sum().item()
