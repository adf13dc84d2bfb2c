"""Small helpers shared by test files (pytest puts tests/ on sys.path, so `from helpers import ...`)."""

import torch


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_mixture_params(seed=0, K=3, D=2):
    """Means (K, D), stds (K,) and *unnormalised* weights (K,) of a random Gaussian mixture, float64."""
    g = gen(seed)
    means = 2 * torch.randn(K, D, generator=g, dtype=torch.float64)
    std = 0.3 + torch.rand(K, generator=g, dtype=torch.float64)
    weights = 0.2 + torch.rand(K, generator=g, dtype=torch.float64)
    return means, std, weights
