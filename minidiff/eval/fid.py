"""Classifier FID: the Fréchet distance between Gaussians fitted to classifier features (lesson 05).

Fit N(μ_1, Σ_1) to the features φ(x) of generated images and N(μ_2, Σ_2) to those of real
images; the Fréchet (2-Wasserstein) distance between the two Gaussians is

    d² = ‖μ_1 − μ_2‖² + tr(Σ_1 + Σ_2 − 2 (Σ_1^{1/2} Σ_2 Σ_1^{1/2})^{1/2})            (Heusel et al. 2017)

(Dowson & Landau 1982; Heusel et al. 2017 use Inception features; we use the penultimate
layer of minidiff's MNIST classifier, so the numbers are *not* comparable with published FIDs.)

The matrix square roots come from symmetric eigendecompositions in float64:
A = V diag(λ) Vᵀ ⇒ A^{1/2} = V diag(√λ) Vᵀ, with tiny negative λ (rounding) clipped to 0.
Σ_1^{1/2} Σ_2 Σ_1^{1/2} is symmetric PSD, so the trace of its root is Σ √λ_i — no scipy.

The estimate is biased upwards at finite sample count n (the covariance of n samples is
noisy), so two samples of the *same* distribution give d² > 0: the **floor**. Report every
FID with its n and the floor at that n (train vs test images, `fid_floor`).
"""

from __future__ import annotations

import torch

from .classifier import extract_features


def _features(name: str, f) -> torch.Tensor:
    if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be a (N, D) tensor of features with N ≥ 2, got {tuple(getattr(f, 'shape', ()))}")
    return f.detach().cpu().double()


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ (D,) and unbiased covariance Σ (D, D) of (N, D) features, in float64."""
    f = _features("features", features)
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def sqrtm_psd(A: torch.Tensor) -> torch.Tensor:
    """A^{1/2} of a symmetric positive semi-definite matrix: V diag(√max(λ, 0)) Vᵀ (float64)."""
    A = torch.as_tensor(A).double()
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {tuple(A.shape)}")
    A = (A + A.T) / 2  # remove rounding asymmetry before eigh
    lam, V = torch.linalg.eigh(A)
    return (V * lam.clamp(min=0).sqrt()) @ V.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet distance: ‖μ_1 − μ_2‖² + tr Σ_1 + tr Σ_2 − 2 tr (Σ_1^{1/2} Σ_2 Σ_1^{1/2})^{1/2}."""
    mu1, mu2 = torch.as_tensor(mu1).double(), torch.as_tensor(mu2).double()
    s1, s2 = torch.as_tensor(sigma1).double(), torch.as_tensor(sigma2).double()
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"shapes do not match: μ {tuple(mu1.shape)}, {tuple(mu2.shape)}; Σ {tuple(s1.shape)}, {tuple(s2.shape)}")
    r1 = sqrtm_psd(s1)
    M = r1 @ s2 @ r1
    lam = torch.linalg.eigvalsh((M + M.T) / 2).clamp(min=0)
    d2 = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * lam.sqrt().sum()
    return max(float(d2), 0.0)


def fid_from_features(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


def classifier_fid(classifier, images: torch.Tensor, reference: torch.Tensor | tuple) -> float:
    """FID between classifier features of `images` (N, 1, 28, 28) in [-1, 1] and a reference:
    images, or precomputed (μ, Σ) of the reference features (e.g. of the whole MNIST test set)."""
    f = extract_features(classifier, images)
    ref = reference if isinstance(reference, tuple) else gaussian_stats(extract_features(classifier, reference))
    return frechet_distance(*gaussian_stats(f), *ref)


def fid_floor(classifier, train_images: torch.Tensor, reference, n: int, seed: int = 0) -> float:
    """The floor at sample count n: classifier FID of n random *real* (train) images against the
    reference. A perfect generator scores about this; lower is noise, not skill."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(train_images.shape[0], generator=g)[:n]
    return classifier_fid(classifier, train_images[idx], reference)
