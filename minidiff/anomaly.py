"""Anomaly detection with a diffusion model: likelihood and reconstruction scores, ROC and AUROC (lesson 13).

A model of MNIST digits assigns every image a (bound on its) negative log-likelihood. An image it has never
seen the like of (a corrupted digit, a letter, a texture) should get a *worse* bound: a score that is
high for anomalies. Two scores, both higher = more anomalous:

    elbo_bpd              DDPM's bound L (DDPM eq. 5) in bits/dim, an *estimate*: L_T and the decoder L_0
                          exactly, the T − 1 KL terms L_{t−1} from `n_t` evenly spaced t (one noise draw each),
                          their mean times T − 1. Uses `minidiff.elbo`'s pieces.
    reconstruction_error  noise x to one t (DDPM eq. 4), denoise in one call (DDPM eq. 15), and measure
                          ‖x − x̂_0‖² per pixel, averaged over `n` noise draws.

One t is one bottleneck: at small t a rotated digit is rebuilt as it is (it is made of digit strokes),
and only from a large t does the model pull it towards an upright digit, while very large t forget any
input. `multi_t_errors` and `multi_t_score` read several t at once, as Graham et al. (2023, "Denoising diffusion models for
out-of-distribution detection") do: the errors at each t are z-scored with the mean and spread of
*normal* reference images (never the test images) and summed. (They rebuild with a full reverse
chain and add a perceptual distance; here it is the one-call x̂_0 and the pixel error.)

A detector is judged by its ROC curve: the true-positive rate (anomalies flagged) against the
false-positive rate (normal images flagged) as the threshold sweeps; AUROC, the area under it, is the
probability that a random anomaly scores above a random normal image (ties count ½; the Mann–Whitney U
statistic divided by n_in · n_out). 0.5 is chance, 1 is perfect.

Known failure (Nalisnick et al. 2019, "Do Deep Generative Models Know What They Don't Know?"): likelihood
models can give *simple* out-of-distribution images (few strokes, flat regions) a higher likelihood than
their own data, so an AUROC can fall below 0.5.

Test sets made in code, with no download: `corrupt` (MNIST-C-like corruptions: noise, impulse noise,
blur, inversion, rotation, a stripe) and `non_digits` (shapes, textures, and letters of two sizes drawn with
matplotlib's text renderer, imported only when letters are asked for).

    check_normalised                  refuse images that are not on the [−1, 1] scale ([0, 255] or [0, 1])
    elbo_bpd, reconstruction_error    the two scores
    z_scores                          scores measured in standard deviations of normal images' scores
    multi_t_errors, multi_t_score     reconstruction errors at several t, z-scored and summed
    max_z                             several scores in one: the most unusual of them, each z-scored
    auroc, roc_curve                  the detector's quality
    corrupt, non_digits               the test sets
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .elbo import discretized_gaussian_log_likelihood, gaussian_kl, nats_to_bits_per_dim
from .forward import add_noise, predict_mean_from_eps, predict_x0, q_posterior_mean_var, reverse_variances
from .schedules import extract
from .utils import check_float, check_image_range, check_positive_int, check_schedule, randn

CORRUPTIONS = ("noise", "impulse", "blur", "invert", "rotate", "stripe")
NON_DIGITS = ("shapes", "textures", "letters", "small letters")


# ---------------------------------------------------------------- the input


def check_normalised(name: str, x: torch.Tensor) -> torch.Tensor:
    """x itself if it is a batch of images on the [−1, 1] scale; a ValueError for [0, 255] images (values
    above 1) and for [0, 1] images (a batch with no negative pixel: MNIST's background is −1)."""
    check_float(name, x)
    if x.dim() != 4:
        raise ValueError(f"{name} must be a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    check_image_range(name, x)
    if x.min() >= 0:
        raise ValueError(f"{name} has no pixel below 0: it looks like [0, 1] images, but scores need the [-1, 1] "
                         "scale the model was trained on; use 2x − 1")
    return x


# ---------------------------------------------------------------- the scores


@torch.no_grad()
def elbo_bpd(schedule, eps_model: Callable, x0: torch.Tensor, n_t: int = 16, sigma2: str = "beta",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """An estimate of DDPM's bound L (eq. 5) per image, in bits/dim (float64, (B,)); higher = more anomalous.

    1. L_T = KL(q(x_T | x_0) ‖ N(0, I)), exact;
    2. L_0 = −log p_θ(x_0 | x_1) with the discretized decoder (DDPM eq. 13), one draw of x_1;
    3. Σ_{t=2..T} L_{t−1} ≈ (T − 1) · mean of L_{t−1} at n_t evenly spaced t (the stratum midpoints), one draw
       of x_t each: a deterministic quadrature of the t-sum, not an unbiased estimate.
    """
    s = check_schedule(schedule)
    check_normalised("x0", x0)
    check_positive_int("n_t", n_t)
    T, x = s.T, x0.double()
    s2 = reverse_variances(s, sigma2)
    abar_T = s.alphas_cumprod[T].item()
    total = gaussian_kl(math.sqrt(abar_T) * x, 1 - abar_T, 0.0, 1.0).flatten(1).sum(1)  # 1. L_T
    edges = torch.linspace(2, T + 1, n_t + 1, dtype=torch.float64)
    ts = [1] + sorted({int(v) for v in ((edges[:-1] + edges[1:]) / 2).floor().clamp(2, T)})
    for t in ts:
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
        tt = torch.full((x0.shape[0],), t, device=x0.device, dtype=torch.long)
        x_t = add_noise(s, x0, noise, tt)
        mean = predict_mean_from_eps(s, x_t.double(), tt, eps_model(x_t, tt).double())  # DDPM eq. 11
        var = extract(s2, tt, x)
        if t == 1:  # 2. the decoder
            total = total - discretized_gaussian_log_likelihood(x, mean, var).flatten(1).sum(1)
        else:  # 3. L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)), weighted by (T − 1) / (number of t)
            mean_q, var_q = q_posterior_mean_var(s, x, x_t.double(), tt)
            total = total + (T - 1) / (len(ts) - 1) * gaussian_kl(mean_q, var_q, mean, var).flatten(1).sum(1)
    return nats_to_bits_per_dim(total, int(x0[0].numel()))


@torch.no_grad()
def reconstruction_error(schedule, eps_model: Callable, x0: torch.Tensor, t: int, n: int = 1,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean over n noise draws of the per-pixel ‖x_0 − x̂_0(x_t)‖², x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4),
    x̂_0 from one call of the model (DDPM eq. 15). Shape (B,), in x0's dtype; higher = more anomalous."""
    s = check_schedule(schedule)
    check_normalised("x0", x0)
    check_positive_int("n", n)
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= s.T:
        raise ValueError(f"t must be an int in 1..T = 1..{s.T}, got {t!r}")
    tt = torch.full((x0.shape[0],), t, device=x0.device, dtype=torch.long)
    err = torch.zeros(x0.shape[0], device=x0.device, dtype=x0.dtype)
    for _ in range(n):
        x_t = add_noise(s, x0, randn(x0.shape, generator, x0.device, x0.dtype), tt)
        err = err + (x0 - predict_x0(s, x_t, tt, eps_model(x_t, tt))).pow(2).flatten(1).mean(1)
    return err / n


def multi_t_errors(schedule, eps_model: Callable, x0: torch.Tensor, ts=(600, 700, 800, 900), n: int = 4,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """`reconstruction_error` at each t in ts: shape (B, len(ts))."""
    return torch.stack([reconstruction_error(schedule, eps_model, x0, t, n, generator) for t in ts], dim=1)


def z_scores(scores: torch.Tensor, reference_scores: torch.Tensor) -> torch.Tensor:
    """(s_k − μ_k) / σ_k for each column k of `scores` (B, K), with μ_k and σ_k the mean and std of column k of
    `reference_scores` (R, K): the same scores of normal images. Shape (B, K)."""
    if scores.dim() != 2 or reference_scores.dim() != 2 or scores.shape[1] != reference_scores.shape[1]:
        raise ValueError(f"scores (B, K) and reference scores (R, K) need the same K (the same ts or scores), got "
                         f"{tuple(scores.shape)} and {tuple(reference_scores.shape)}")
    if reference_scores.shape[0] < 2:
        raise ValueError(f"the reference must hold at least 2 normal images to give a spread, got {reference_scores.shape[0]}")
    return (scores - reference_scores.mean(0)) / reference_scores.std(0)


def multi_t_score(errors: torch.Tensor, reference_errors: torch.Tensor) -> torch.Tensor:
    """Σ_k z_k (Graham et al. 2023): the errors (B, K) of `multi_t_errors`, z-scored against the same errors of
    normal images (R, K), summed over the K values of t. Shape (B,); higher = more anomalous."""
    return z_scores(errors, reference_errors).sum(1)


def max_z(scores: torch.Tensor, reference_scores: torch.Tensor) -> torch.Tensor:
    """max_k z_k: several scores (B, K) in one, each z-scored against the same scores of normal images (R, K). An
    image is as anomalous as its most unusual score, so a detector that catches blur (the ELBO) and one that
    catches a quarter turn (multi-t) both keep their catch. Shape (B,)."""
    return z_scores(scores, reference_scores).max(1).values


# ---------------------------------------------------------------- ROC


def _scores(name: str, s) -> torch.Tensor:
    s = torch.as_tensor(s)
    if s.dim() != 1 or s.numel() < 1 or not s.is_floating_point():
        raise ValueError(f"{name} must be a non-empty 1-D float tensor of scores, got {tuple(s.shape)} {s.dtype}")
    if torch.isnan(s).any():
        raise ValueError(f"{name} holds NaN")
    return s.double().cpu()


def auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """P(score of an anomaly > score of a normal image) + ½ P(equal): the area under the ROC curve, from ranks
    (Mann–Whitney: U = R_out − n_out (n_out + 1)/2 with R_out the sum of the anomalies' ranks, ties averaged)."""
    a, b = _scores("scores_in", scores_in), _scores("scores_out", scores_out)
    both = torch.cat([a, b])
    order = both.argsort()
    ranks = torch.empty_like(both)
    ranks[order] = torch.arange(1, both.numel() + 1, dtype=torch.float64)
    values, inverse = torch.unique(both, return_inverse=True)  # average the ranks of ties
    mean_rank = torch.zeros_like(values).index_add_(0, inverse, ranks) / torch.bincount(inverse).double()
    r_out = mean_rank[inverse][a.numel():].sum()
    n_in, n_out = a.numel(), b.numel()
    return float((r_out - n_out * (n_out + 1) / 2) / (n_in * n_out))


def roc_curve(scores_in: torch.Tensor, scores_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """False- and true-positive rates (float64) as the threshold falls through every distinct score, from (0, 0)
    to (1, 1); `torch.trapezoid(tpr, fpr)` is the AUROC."""
    a, b = _scores("scores_in", scores_in), _scores("scores_out", scores_out)
    thresholds = torch.cat([torch.tensor([math.inf], dtype=torch.float64), torch.unique(torch.cat([a, b])).flip(0)])
    fpr = (a[None, :] >= thresholds[:, None]).double().mean(1)
    tpr = (b[None, :] >= thresholds[:, None]).double().mean(1)
    return fpr, tpr


# ---------------------------------------------------------------- test sets


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def corrupt(x: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """MNIST-C-like corruptions (after Mu & Gilmer 2019) of images in [−1, 1], returned in [−1, 1]:

    "noise":   Gaussian noise of std 0.4 (clipped);   "impulse": 15 % of pixels set to −1 or +1 at random;
    "blur":    Gaussian blur of std 1.5 pixels;       "invert":  −x (white background, black stroke);
    "rotate":  a quarter turn;                        "stripe":  a vertical bar of 3 bright columns at a random place.
    """
    check_image_range("x", x)
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind must be one of {CORRUPTIONS}, got {kind!r}")
    if kind == "noise":
        return (x + 0.4 * randn(x.shape, generator, x.device, x.dtype)).clamp(-1, 1)
    if kind == "impulse":
        u = torch.rand(x.shape, generator=generator).to(x.device)
        v = torch.rand(x.shape, generator=generator).to(x.device)
        return torch.where(u < 0.15, torch.where(v < 0.5, -1.0, 1.0).to(x.dtype), x)
    if kind == "blur":
        return _gaussian_blur(x, 1.5).clamp(-1, 1)
    if kind == "invert":
        return -x
    if kind == "rotate":
        return torch.rot90(x, 1, dims=(-2, -1))
    cols = torch.randint(4, x.shape[-1] - 7, (x.shape[0],), generator=generator).to(x.device)
    j = torch.arange(x.shape[-1], device=x.device)
    bar = ((j[None, :] >= cols[:, None]) & (j[None, :] < cols[:, None] + 3)).reshape(x.shape[0], 1, 1, -1)
    return torch.where(bar, torch.ones_like(x), x)


def _grid(n: int, size: int):
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in (−1, 1)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return yy.expand(n, 1, size, size), xx.expand(n, 1, size, size)


def _u(n: int, lo: float, hi: float, g) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n, generator=g)).reshape(n, 1, 1, 1)


def _shapes(n: int, size: int, g) -> torch.Tensor:
    yy, xx = _grid(n, size)
    cy, cx = _u(n, -0.25, 0.25, g), _u(n, -0.25, 0.25, g)
    r, w = _u(n, 0.35, 0.7, g), _u(n, 0.08, 0.16, g)
    kind = torch.randint(0, 3, (n, 1, 1, 1), generator=g)
    ring = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt().sub(r).abs() < w
    box = torch.maximum((yy - cy).abs(), (xx - cx).abs()).sub(r).abs() < w
    tri = (yy - cy < r) & (yy - cy > 2 * (xx - cx).abs() - r)  # a filled triangle
    on = torch.where(kind == 0, ring, torch.where(kind == 1, box, tri))
    return _gaussian_blur(on.float() * 2 - 1, 0.5)


def _textures(n: int, size: int, g) -> torch.Tensor:
    yy, xx = _grid(n, size)
    freq, angle, phase = _u(n, 3.0, 9.0, g), _u(n, 0.0, math.pi, g), _u(n, 0.0, 2 * math.pi, g)
    grating = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) * math.pi + phase)
    blobs = _gaussian_blur(torch.randn(n, 1, size, size, generator=g), 2.0)
    blobs = blobs / blobs.flatten(1).std(1).reshape(n, 1, 1, 1)
    kind = torch.randint(0, 2, (n, 1, 1, 1), generator=g)
    return torch.where(kind == 0, grating, blobs).clamp(-1, 1)


LETTERS = "ACEFHKLMNPRTUVWXYaehkmnrtuwy"  # no letter that reads as a digit (O, I, l, S, Z, B, G, g, q, b, z)


def _letters(n: int, size: int, g, points: float = 72.0) -> torch.Tensor:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only here: the library itself needs no matplotlib
    from matplotlib.figure import Figure

    glyphs = []
    for ch in LETTERS:
        fig = Figure(figsize=(1, 1), dpi=size)
        canvas = FigureCanvasAgg(fig)
        fig.patch.set_facecolor("black")
        fig.text(0.5, 0.5, ch, color="white", fontsize=points * 28 / size, fontweight="bold", ha="center", va="center")
        canvas.draw()
        rgba = torch.frombuffer(bytearray(canvas.buffer_rgba()), dtype=torch.uint8).reshape(size, size, 4)
        glyphs.append(rgba[..., 0].float() / 127.5 - 1)
    glyphs = torch.stack(glyphs)[:, None]
    pick = torch.randint(0, len(LETTERS), (n,), generator=g)
    shift = torch.randint(-2, 3, (n, 2), generator=g)
    return torch.stack([torch.roll(glyphs[k], (int(dy), int(dx)), dims=(-2, -1)) for k, (dy, dx) in zip(pick, shift)])


def non_digits(n: int, kind: str, size: int = 28, generator: torch.Generator | None = None) -> torch.Tensor:
    """n procedural images (n, 1, size, size) in [−1, 1], bright strokes on a dark background like MNIST:

    "shapes":   a ring, a square outline or a filled triangle at a random place and size;
    "textures": a sine grating (random frequency, angle, phase) or smoothed Gaussian noise;
    "letters":  a capital or small letter (one that reads as no digit), rendered by matplotlib in bold at 72 pt on a
                28 px canvas (the em is the canvas' height: capitals about as tall as MNIST's digits), shifted a little;
    "small letters": the same at 36 pt, half the size: mostly background, a *simpler* image than a digit.
    """
    check_positive_int("n", n)
    if kind not in NON_DIGITS:
        raise ValueError(f"kind must be one of {NON_DIGITS}, got {kind!r}")
    if kind == "small letters":
        return _letters(n, size, generator, points=36.0).clamp(-1, 1)
    make = {"shapes": _shapes, "textures": _textures, "letters": _letters}[kind]
    return make(n, size, generator).clamp(-1, 1)
