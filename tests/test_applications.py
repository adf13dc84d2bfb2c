"""minidiff.inpaint, minidiff.editing and minidiff.anomaly (lesson 13): closed forms and invariants.

* masks: the fraction of unknown pixels; the replacement step keeps the known pixels (exactly at t = 0);
* the forward jump q(x_{t'} | x_t) composes with q(x_t | x_0) into q(x_{t'} | x_0) (moments);
* RePaint's time list: r = 1 is the plain list, every move is one level (or j levels), the down-move count;
* inpainting a two-pixel, two-mode Gaussian mixture with its exact ε-model: replacement lands in the wrong mode
  for a few per cent of the samples, RePaint's resampling (nearly) never, and both keep the known pixel exactly;
* SDEdit's start is DDPM eq. 4 at t_0 = round(s·T); Tweedie's one-step denoiser is the closed-form posterior mean
  of Gaussian data; PSNR of a constant error;
* the ELBO estimate agrees with minidiff.elbo.vlb_terms on average; the reconstruction error of Gaussian data is
  the posterior variance; AUROC on closed cases and against all pairs; ROC's area is the AUROC;
* bad inputs: wrong mask shape or dtype, a strength outside (0, 1], images outside [−1, 1], [0, 1] images.
"""

import math

import pytest
import torch

from minidiff import anomaly, editing, inpaint
from minidiff.data.toy import GaussianMixture
from minidiff.ddim import ddim_timesteps
from minidiff.elbo import vlb_terms
from minidiff.forward import add_noise
from minidiff.samplers import sigmas_from_schedule
from minidiff.schedules import NoiseSchedule

torch.set_num_threads(1)
S = NoiseSchedule.make("cosine", 1000)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def mixture_eps(schedule, mix):
    """The exact ε-model of mixture data on images (B, 1, 1, D): ε = −√(1 − ᾱ_t) ∇ log q_t(x_t)."""

    def eps(x, t):
        ab = schedule.alphas_cumprod[t.cpu()]
        score = mix.noised_score(x.flatten(1).double(), ab)
        return (-(1 - ab).sqrt()[:, None] * score).reshape(x.shape).to(x.dtype)

    return eps


# ---------------------------------------------------------------- inpainting


@pytest.mark.parametrize("kind,frac,expected", [("centre", 0.5, 400 / 784), ("centre", 0.25, 196 / 784),
                                                ("half", 0.5, 0.5), ("stripe", 0.3, 8 / 28)])
def test_mask_fractions(kind, frac, expected):
    m = inpaint.make_mask(kind, fraction=frac)
    assert m.shape == (1, 1, 28, 28) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert math.isclose((1 - m).mean().item(), expected, rel_tol=1e-6)


def test_random_mask_fraction_and_independence():
    m = inpaint.make_mask("random", fraction=0.9, generator=gen(), n=50)
    assert abs((1 - m).mean().item() - 0.9) < 0.01
    assert not torch.equal(m[0], m[1])


def test_replace_known_keeps_the_known_pixels():
    x, known, noise = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4) * 2 - 1, torch.randn(3, 1, 4, 4)
    mask = inpaint.make_mask("half", size=4)
    out = inpaint.replace_known(S, x, known, mask, 0, noise)
    assert torch.equal(out * mask, known * mask) and torch.equal(out * (1 - mask), x * (1 - mask))
    out = inpaint.replace_known(S, x, known, mask, 400, noise)
    assert torch.allclose(out * mask, add_noise(S, known, noise, 400) * mask)


def test_forward_jump_composes_with_q():
    """x_t ~ q(x_t | x_0), then a jump to t' gives q(x_{t'} | x_0) = N(√ᾱ_{t'} x_0, 1 − ᾱ_{t'})."""
    x0 = torch.full((200_000, 1), 0.7, dtype=torch.float64)
    g = gen(1)
    x_t = add_noise(S, x0, torch.randn(x0.shape, generator=g, dtype=torch.float64), 300)
    x_tp = inpaint.forward_jump(S, x_t, 300, 700, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    ab = S.alphas_cumprod[700].item()
    assert abs(x_tp.mean().item() - math.sqrt(ab) * 0.7) < 0.01
    assert abs(x_tp.var().item() - (1 - ab)) < 0.01
    with pytest.raises(ValueError, match="t_next"):
        inpaint.forward_jump(S, x_t, 700, 300, x_t)


def test_repaint_timesteps():
    assert inpaint.repaint_timesteps(1000, 20) == ddim_timesteps(1000, 20) + [0]
    levels = ddim_timesteps(1000, 10) + [0]
    for r, j in ((3, 1), (2, 2), (4, 5)):
        ts = inpaint.repaint_timesteps(1000, 10, r, j)
        assert ts[0] == 1000 and ts[-1] == 0
        pos = [levels.index(t) for t in ts]
        assert all(abs(b - a) == 1 for a, b in zip(pos, pos[1:]))  # one level at a time
        downs = sum(b > a for a, b in zip(pos, pos[1:]))
        jump_points = len([p for p in range(j, 10, j) if (10 - p) % j == 0])
        assert downs == 10 + (r - 1) * j * jump_points


def test_resampling_fixes_the_wrong_mode_of_replacement():
    """Two pixels from ½ N((.5, .5), .15²) + ½ N((−.5, −.5), .15²); pixel 1 known = 0.5, so pixel 2 | pixel 1 is
    (to 1e-5) N(0.5, 0.15²). Replacement puts a few per cent of the samples in the other mode; RePaint does not."""
    mix = GaussianMixture(torch.tensor([[0.5, 0.5], [-0.5, -0.5]]), 0.15)
    eps = mixture_eps(S, mix)
    known = torch.zeros(2000, 1, 1, 2)
    known[..., 0] = 0.5
    mask = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    plain = inpaint.inpaint(S, eps, known, mask, steps=50, generator=gen(0))
    re = inpaint.inpaint(S, eps, known, mask, steps=50, resamples=4, generator=gen(0))
    assert torch.equal(plain[..., 0], known[..., 0]) and torch.equal(re[..., 0], known[..., 0])
    wrong_plain, wrong_re = (plain[..., 1] < 0).float().mean().item(), (re[..., 1] < 0).float().mean().item()
    assert wrong_plain > 0.015 and wrong_re < 0.005
    assert abs(re[..., 1].mean().item() - 0.5) < 0.02


def test_inpaint_bad_inputs():
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="mask must be shaped"):
        inpaint.inpaint(S, model, x, torch.ones(4, 4), steps=2)
    with pytest.raises(TypeError, match="bool or float"):
        inpaint.inpaint(S, model, x, torch.ones(1, 1, 4, 4, dtype=torch.long), steps=2)
    with pytest.raises(ValueError, match="only 0"):
        inpaint.inpaint(S, model, x, torch.full((1, 1, 4, 4), 0.5), steps=2)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        inpaint.inpaint(S, model, x + 255, torch.ones(1, 1, 4, 4), steps=2)
    out = inpaint.inpaint(S, model, x, torch.ones(2, 1, 4, 4, dtype=torch.bool), steps=2)
    assert torch.equal(out, x)  # everything known: the image itself


# ---------------------------------------------------------------- SDEdit and denoising


def test_sdedit_start_is_ddpm_eq4():
    guide, noise = torch.rand(3, 1, 5, 5) * 2 - 1, torch.randn(3, 1, 5, 5)
    for st, t0 in ((0.3, 300), (0.0004, 1), (1.0, 1000), (0.6666, 667)):
        x, t = editing.sdedit_start(S, guide, st, noise)
        assert t == t0 and torch.allclose(x, add_noise(S, guide, noise, t0))
    for bad in (0.0, -0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="strength"):
            editing.sdedit_start(S, guide, bad, noise)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        editing.sdedit(S, lambda x, t: torch.zeros_like(x), guide * 255, 0.5)


def test_sdedit_runs_down_to_zero():
    seen = []

    def model(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    out = editing.sdedit(S, model, torch.zeros(2, 1, 3, 3), 0.5, steps=10)
    assert seen == [500, 400, 300, 200, 100] and out.shape == (2, 1, 3, 3)


def test_matching_t():
    sig = sigmas_from_schedule(S)
    for t in (1, 50, 300, 999):
        assert editing.matching_t(S, float(sig[t])) == t
    with pytest.raises(ValueError, match="sigma"):
        editing.matching_t(S, 0.0)


def test_tweedie_is_the_gaussian_posterior_mean():
    """x_0 ~ N(μ, s² I) per pixel, y = x_0 + σ n: E[x_0 | y] = μ + s²/(s² + σ²) (y − μ)."""
    mu, sd = 0.2, 0.3
    mix = GaussianMixture(torch.full((1, 4), mu), sd)
    sigma = float(sigmas_from_schedule(S)[250])
    y = torch.randn(6, 1, 2, 2, generator=gen(2), dtype=torch.float64)
    got = editing.tweedie_denoise(S, mixture_eps(S, mix), y, sigma)
    assert torch.allclose(got, mu + sd**2 / (sd**2 + sigma**2) * (y - mu), atol=1e-10)


def test_psnr_and_polyline():
    x = torch.zeros(2, 1, 3, 3)
    assert torch.allclose(editing.psnr(x + 0.2, x), torch.full((2,), 20.0))
    im = editing.draw_polyline([(14, 4), (14, 24)], width=1.6)
    assert im.shape == (1, 1, 28, 28) and im[0, 0, 14, 10] == 1 and im[0, 0, 2, 10] == -1
    assert im.min() >= -1 and im.max() <= 1


# ---------------------------------------------------------------- anomaly scores


def test_elbo_bpd_matches_vlb_terms_on_average():
    s = NoiseSchedule.make("linear", 20)
    mix = GaussianMixture(torch.tensor([[0.3, -0.2]]), 0.25)
    eps = mixture_eps(s, mix)
    x0 = mix.sample(3000, generator=gen(3)).clamp(-1, 1).float().reshape(-1, 1, 1, 2)
    est = anomaly.elbo_bpd(s, eps, x0, n_t=19, generator=gen(4))  # every t once: the full sum
    ref = vlb_terms(s, eps, x0, decoder="discretized", generator=gen(5)).bits_per_dim
    assert est.shape == (3000,) and est.dtype == torch.float64
    assert abs(est.mean().item() - ref.mean().item()) < 0.02 * abs(ref.mean().item())


def test_reconstruction_error_is_the_posterior_variance():
    sd, t = 0.3, 200
    mix = GaussianMixture(torch.zeros(1, 8), sd)
    sig2 = float(sigmas_from_schedule(S)[t]) ** 2
    x0 = mix.sample(4000, generator=gen(6)).clamp(-1, 1).float().reshape(-1, 2, 2, 2)
    x0[:, 0, 0, 0] = -0.9  # make sure each image has a negative pixel (not mistaken for [0, 1] data)
    err = anomaly.reconstruction_error(S, mixture_eps(S, mix), x0, t, n=1, generator=gen(7))
    # x̂_0 = k y with k = s²/(s² + σ²): the posterior variance kσ² on the 7 Gaussian pixels; on the fixed pixel
    # x_0 − k(x_0 + σn) has the mean square ((1 − k) x_0)² + k²σ²
    k = sd**2 / (sd**2 + sig2)
    expected = (7 * k * sig2 + ((1 - k) * 0.9) ** 2 + k**2 * sig2) / 8
    assert abs(err.mean().item() - expected) < 0.03 * expected


def test_multi_t_score_is_centred_on_normal_images_and_flags_others():
    mix = GaussianMixture(torch.zeros(1, 8), 0.3)
    eps = mixture_eps(S, mix)

    def images(n, seed, shift=0.0):
        x = (mix.sample(n, generator=gen(seed)) + shift).clamp(-1, 1).float().reshape(-1, 2, 2, 2)
        x[:, 0, 0, 0] = -0.9  # a negative pixel in each image: not mistaken for [0, 1] data
        return x

    ts = (100, 300, 500)
    ref, normal, odd = (anomaly.multi_t_errors(S, eps, x, ts=ts, n=2, generator=gen(14 + i))
                        for i, x in enumerate((images(2000, 11), images(2000, 12), images(2000, 13, shift=0.6))))
    assert ref.shape == (2000, len(ts))
    s_normal, s_odd = anomaly.multi_t_score(normal, ref), anomaly.multi_t_score(odd, ref)
    assert s_normal.shape == (2000,)
    # each z-score has mean 0 and std 1 over normal images, so their sum has mean ≈ 0 (± a few % here)
    assert abs(s_normal.mean().item()) < 0.15 and 0.5 * len(ts) ** 0.5 < s_normal.std().item() < 2 * len(ts)
    assert anomaly.auroc(s_normal, s_odd) > 0.9  # shifted images are rebuilt towards the data, far from themselves
    with pytest.raises(ValueError, match="at least 2"):
        anomaly.multi_t_score(normal, ref[:1])
    with pytest.raises(ValueError, match="same K"):
        anomaly.multi_t_score(normal, ref[:, :2])


def test_max_z_keeps_the_most_unusual_score():
    ref = torch.tensor([[0.0, 10.0], [2.0, 10.0], [1.0, 13.0], [1.0, 7.0]])  # means (1, 10), stds (√(2/3), √6)
    x = torch.tensor([[1.0, 10.0], [3.0, 10.0], [1.0, 22.0]])
    expected = torch.tensor([0.0, 2 / (2 / 3) ** 0.5, 12 / 6**0.5])
    assert torch.allclose(anomaly.max_z(x, ref), expected)
    with pytest.raises(ValueError, match="same K"):
        anomaly.max_z(x[:, :1], ref)
    with pytest.raises(ValueError, match="at least 2"):
        anomaly.max_z(x, ref[:1])


def test_auroc_closed_cases():
    a, b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0])
    assert math.isclose(anomaly.auroc(a, b), 4.5 / 6)  # pairs: (1 vs 0, 1, 2) = 1 + ½ + 0; (3 vs all) = 3
    assert anomaly.auroc(a, a + 10) == 1.0 and anomaly.auroc(a + 10, a) == 0.0
    assert anomaly.auroc(torch.ones(5), torch.ones(7)) == 0.5
    g = gen(8)
    x, y = torch.randn(300, generator=g).round(decimals=1), (torch.randn(200, generator=g) + 0.7).round(decimals=1)
    pairs = ((y[None, :] > x[:, None]).double() + 0.5 * (y[None, :] == x[:, None]).double()).mean().item()
    assert math.isclose(anomaly.auroc(x, y), pairs, rel_tol=1e-12)
    fpr, tpr = anomaly.roc_curve(x, y)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert math.isclose(torch.trapezoid(tpr, fpr).item(), pairs, rel_tol=1e-12)


def test_scores_refuse_unnormalised_images():
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        anomaly.elbo_bpd(S, model, x)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        anomaly.reconstruction_error(S, model, x * 255, 100)
    with pytest.raises(ValueError, match="B, C, H, W"):
        anomaly.reconstruction_error(S, model, x[0] * 2 - 1, 100)
    with pytest.raises(ValueError, match="t must"):
        anomaly.reconstruction_error(S, model, x * 2 - 1, 0)


def test_test_sets():
    x = torch.rand(4, 1, 28, 28, generator=gen(9)) * 2 - 1
    for kind in anomaly.CORRUPTIONS:
        out = anomaly.corrupt(x, kind, gen(10))
        assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1 and not torch.equal(out, x)
    assert torch.equal(anomaly.corrupt(x, "invert"), -x)
    assert torch.equal(anomaly.corrupt(x, "rotate"), torch.rot90(x, 1, (-2, -1)))
    for kind in anomaly.NON_DIGITS:
        out = anomaly.non_digits(5, kind, generator=gen(11))
        assert out.shape == (5, 1, 28, 28) and out.min() >= -1 and out.max() <= 1 and out.min() < 0
    with pytest.raises(ValueError, match="kind"):
        anomaly.corrupt(x, "fog")
