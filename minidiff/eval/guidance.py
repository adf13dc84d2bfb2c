"""Measuring classifier-free guidance's trade-off: accuracy, FID and diversity (lesson 08)."""

from __future__ import annotations

import torch

from .classifier import extract_features, predict
from .fid import frechet_distance, gaussian_stats


def within_class_diversity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between the features of samples of the same class,
    averaged over classes:  (1/|C|) Σ_c mean_{i<j, y_i=y_j=c} ‖f_i − f_j‖.

    Falls as guidance grows: samples of one digit start to look alike (mode seeking).
    """
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be (N, D) and labels (N,), got {tuple(features.shape)}, {tuple(labels.shape)}")
    per_class = []
    for c in labels.unique():
        f = features[labels == c].double()
        if f.shape[0] < 2:
            continue
        d = torch.cdist(f, f)
        n = f.shape[0]
        per_class.append(d.sum() / (n * (n - 1)))  # the diagonal is 0; each pair counted twice
    if not per_class:
        raise ValueError("within_class_diversity needs at least two samples of some class")
    return float(torch.stack(per_class).mean())


def guidance_metrics(classifier, images: torch.Tensor, digits: torch.Tensor, reference_stats: tuple) -> dict:
    """The three numbers of the trade-off, for samples `images` that were asked to show `digits`:

    accuracy   fraction the evaluation classifier labels as the requested digit
    fid        classifier FID (`eval.fid`) against `reference_stats` = (μ, Σ) of real features
    diversity  `within_class_diversity` of the classifier features, grouped by the digit the
               classifier reads (at w = 0 the requested digit means nothing, so grouping by it
               would measure the spread *between* digits)
    """
    feats = extract_features(classifier, images)
    pred = predict(classifier, images)
    return {
        "accuracy": float((pred == digits.cpu()).float().mean()),
        "fid": frechet_distance(*gaussian_stats(feats), *reference_stats),
        "diversity": within_class_diversity(feats, pred),
    }
