"""minidiff.data.toy: the 2D datasets, and the exact densities checked against independent oracles
(numerical integration, autograd, Monte Carlo, torch.distributions)."""

import math

import pytest
import torch
from helpers import gen, random_mixture_params

from minidiff.data import toy
from minidiff.data.toy import DATASETS, Checkerboard, GaussianMixture, density, gmm8, sample

torch.set_num_threads(1)


def random_mixture(seed=0, K=3, D=2):
    return GaussianMixture(*random_mixture_params(seed, K, D))  # weights deliberately unnormalised


def grid(lo, hi, m):
    """Midpoints of an m×m grid over [lo, hi]² and the area of one cell."""
    h = (hi - lo) / m
    c = lo + h * (torch.arange(m, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1), h * h


# ---------------------------------------------------------------- every dataset


@pytest.mark.parametrize("name", DATASETS)
def test_shape_dtype_spread(name):
    x = sample(name, 5000, gen(0))
    assert x.shape == (5000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() < 3.5, "coordinates should lie within about [-3, 3]"
    std = x.std(dim=0)
    assert ((std > 0.5) & (std < 1.6)).all(), f"spread should be about 1, got std {std.tolist()}"


@pytest.mark.parametrize("name", DATASETS)
def test_deterministic_given_generator(name):
    a, b = sample(name, 300, gen(7)), sample(name, 300, gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(name, 300, gen(8)))
    torch.manual_seed(3)
    c = sample(name, 300)  # global RNG, seeded
    torch.manual_seed(3)
    assert torch.equal(c, sample(name, 300))


@pytest.mark.parametrize("name", ["swiss_roll", "moons"])
def test_curves_have_no_density(name):
    with pytest.raises(ValueError, match="no closed-form density"):
        density(name)


@pytest.mark.parametrize("bad", ["swissroll", "", "mnist", None])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(ValueError, match="swiss_roll, moons, gmm8, checkerboard"):
        sample(bad, 10)
    with pytest.raises(ValueError, match="valid names"):
        density(bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10", None])
def test_bad_n(bad):
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample("gmm8", bad)
    with pytest.raises(ValueError, match="n must be a positive int"):
        gmm8().sample(bad)


def test_numpy_int_n_is_accepted():
    np = pytest.importorskip("numpy")
    assert sample("moons", np.int64(4)).shape == (4, 2)


# ---------------------------------------------------------------- Gaussian mixture


def test_gmm8_is_the_dataset():
    """sample("gmm8") and gmm8() are the same distribution: moments and mode occupancy."""
    p, x = gmm8(), sample("gmm8", 40_000, gen(1)).double()
    assert isinstance(density("gmm8"), GaussianMixture)
    assert torch.allclose(x.mean(0), p.mean(), atol=0.03)
    assert torch.allclose(torch.cov(x.T), p.cov(), atol=0.05)
    counts = torch.bincount(p.responsibilities(x).argmax(1), minlength=8).double() / len(x)
    assert torch.allclose(counts, torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.01)
    # within one mode, the spread is σ = 0.2
    k0 = x[p.responsibilities(x).argmax(1) == 0]
    assert abs((k0 - p.means[0]).std().item() - 0.2) < 0.01


def test_log_prob_of_one_gaussian_matches_torch_distributions():
    mu, sigma = torch.tensor([[0.5, -1.0]], dtype=torch.float64), 0.7
    p = GaussianMixture(mu, sigma)
    x = torch.randn(50, 2, generator=gen(2), dtype=torch.float64) * 2
    ref = torch.distributions.MultivariateNormal(mu[0], sigma**2 * torch.eye(2, dtype=torch.float64)).log_prob(x)
    assert torch.allclose(p.log_prob(x), ref, atol=1e-10)


@pytest.mark.parametrize("p", [gmm8(), random_mixture(0)], ids=["gmm8", "random"])
def test_mixture_density_integrates_to_one(p):
    x, cell = grid(-7.0, 7.0, 700)
    total = p.log_prob(x).exp().sum().item() * cell
    assert abs(total - 1) < 1e-3, total


def test_log_prob_is_finite_far_away_and_keeps_dtype():
    p = gmm8()
    x = torch.tensor([[100.0, 0.0], [0.0, -300.0]])
    lp = p.log_prob(x)
    assert lp.dtype == torch.float32 and torch.isfinite(lp).all() and (lp < -1e4).all()
    assert torch.isfinite(p.score(x)).all()


@pytest.mark.parametrize("p", [gmm8(), random_mixture(1), random_mixture(2, K=4, D=3)], ids=["gmm8", "random2d", "random3d"])
def test_score_equals_autograd_gradient(p):
    x = (2 * torch.randn(64, p.dim, generator=gen(3), dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(p.log_prob(x).sum(), x)
    assert torch.allclose(p.score(x.detach()), grad, atol=1e-9, rtol=1e-7)


def test_responsibilities_sum_to_one():
    r = random_mixture(4).responsibilities(torch.randn(20, 2, generator=gen(4), dtype=torch.float64))
    assert torch.allclose(r.sum(1), torch.ones(20, dtype=torch.float64))


@pytest.mark.parametrize("alpha_bar", [0.9, 0.3, 0.02])
def test_noised_matches_monte_carlo_forward_process(alpha_bar):
    """The law of √ᾱ x0 + √(1−ᾱ) ε (simulated) equals p.noised(ᾱ) (closed form)."""
    p = random_mixture(5)
    n = 100_000
    x0 = p.sample(n, gen(5)).double()
    xt = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * torch.randn(n, 2, generator=gen(6), dtype=torch.float64)
    q = p.noised(alpha_bar)
    assert torch.allclose(xt.mean(0), q.mean(), atol=0.02)
    assert torch.allclose(torch.cov(xt.T), q.cov(), atol=0.04)
    # cross-entropy −E log q(x_t) equals q's entropy only if q is the law of x_t (Gibbs).
    cross = -q.log_prob(xt).mean().item()
    h, se = q.entropy(n, gen(7))
    assert abs(cross - h) < 5 * se + 5e-3, (cross, h, se)
    # Cov[x_t] = ᾱ Cov[x_0] + (1 − ᾱ) I, whatever the law of x_0
    assert torch.allclose(q.cov(), alpha_bar * p.cov() + (1 - alpha_bar) * torch.eye(2, dtype=torch.float64))


def test_noised_parameters_and_edge_cases():
    p = random_mixture(6)
    q = p.noised(0.25)
    assert torch.allclose(q.means, 0.5 * p.means)
    assert torch.allclose(q.std**2, 0.25 * p.std**2 + 0.75)
    assert torch.allclose(q.weights, p.weights)
    same = p.noised(1.0)
    assert torch.allclose(same.means, p.means) and torch.allclose(same.std, p.std)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="alpha_bar"):
            p.noised(bad)


def test_noised_score_with_one_alpha_bar_per_row():
    p = gmm8()
    x = torch.randn(6, 2, generator=gen(8))
    ab = torch.tensor([0.999, 0.9, 0.5, 0.1, 0.01, 1e-4])
    rows = torch.cat([p.noised(a).score(x[i : i + 1]) for i, a in enumerate(ab.tolist())])
    out = p.noised_score(x, ab)
    assert out.dtype == torch.float32
    assert torch.allclose(out, rows, atol=1e-5)
    assert torch.allclose(p.noised_score(x, 0.5), p.noised(0.5).score(x), atol=1e-6)


def test_entropy_of_one_gaussian_matches_closed_form():
    sigma = 0.6
    p = GaussianMixture(torch.tensor([[1.0, 2.0]]), sigma)
    h, se = p.entropy(n=50_000, generator=gen(9))
    exact = 1 + math.log(2 * math.pi * sigma**2)  # D/2 · (1 + log 2πσ²), D = 2
    assert 0 < se < 0.02
    assert abs(h - exact) < 4 * se, (h, exact, se)


def test_mixture_argument_errors():
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="std"):
        GaussianMixture(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="std"):
        GaussianMixture(torch.zeros(3, 2), -1.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(3, 2), 1.0, torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        gmm8().log_prob(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="floating-point"):
        gmm8().score(torch.zeros(5, 2, dtype=torch.long))


# ---------------------------------------------------------------- checkerboard


def test_checkerboard_samples_lie_on_black_squares():
    cb = density("checkerboard")
    assert isinstance(cb, Checkerboard)
    x = sample("checkerboard", 100_000, gen(10))
    lp = cb.log_prob(x)
    assert torch.isfinite(lp).all()
    assert torch.allclose(lp, torch.full_like(lp, -math.log(8)))
    # each of the 8 black squares gets 1/8 of the samples, and each square is filled uniformly
    cell = torch.floor(x.double() + 2).long()
    assert ((cell.sum(1) % 2) == 0).all()
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).double() / len(x)
    black = torch.tensor([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    assert (counts[~black] == 0).all()
    assert torch.allclose(counts[black], torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.005)
    frac = (x.double() + 2) % 1
    assert abs(frac.mean().item() - 0.5) < 0.005 and abs(frac.var().item() - 1 / 12) < 0.002


def test_checkerboard_density_integrates_to_one_and_vanishes_on_white():
    cb = Checkerboard()
    x, cell = grid(-3.0, 3.0, 300)
    p = cb.log_prob(x).exp()
    assert abs(p.sum().item() * cell - 1) < 1e-9
    # known points: (−1.5, −1.5) is on square (0, 0): black; (−0.5, −1.5) on (1, 0): white
    pts = torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [0.5, -0.5], [2.5, 0.0], [-2.0, -2.0], [2.0, 2.0]])
    lp = cb.log_prob(pts)
    assert lp[0] == lp[2] == lp[5] == pytest.approx(-math.log(8))
    assert torch.isinf(lp[[1, 3, 4, 6]]).all()


def test_checkerboard_entropy_is_log_area():
    assert Checkerboard().entropy() == pytest.approx(math.log(8))
    big = Checkerboard(squares=3, side=0.5)  # 5 black squares of area 1/4
    assert big.entropy() == pytest.approx(math.log(5 * 0.25))
    x = big.sample(20_000, gen(11))
    assert torch.isfinite(big.log_prob(x)).all()
    assert abs(-big.log_prob(x).mean().item() - big.entropy()) < 1e-6
    xg, cell = grid(-1.0, 1.0, 200)
    assert abs(big.log_prob(xg).exp().sum().item() * cell - 1) < 1e-9


def test_module_constants():
    assert toy.DATASETS == ("swiss_roll", "moons", "gmm8", "checkerboard")
