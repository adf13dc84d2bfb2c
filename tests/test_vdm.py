"""minidiff.vdm: closed forms and invariants of VDM's log-SNR view (lesson 11)."""

import math

import pytest
import torch
from helpers import load_benchmark

from minidiff import vdm
from minidiff.schedules import NoiseSchedule, log_snr
from minidiff.vpred import EpsFromV

torch.set_num_threads(1)
MU = torch.tensor([0.5, -1.0], dtype=torch.float64)
S2 = torch.tensor([0.25, 0.09], dtype=torch.float64)


def test_alpha_sigma_is_variance_preserving_and_snr_is_exp_minus_gamma():
    g = torch.linspace(-15, 15, 31, dtype=torch.float64)
    a, s = vdm.alpha_sigma(g)
    assert torch.allclose(a**2 + s**2, torch.ones_like(g), atol=1e-14)
    assert torch.allclose(torch.log(a**2 / s**2), -g, atol=1e-9)


@pytest.mark.parametrize("make", [vdm.LinearLogSNR, vdm.CosineLogSNR, lambda a, b: vdm.MonotoneLogSNR(a, b, seed=3)])
def test_schedules_hit_their_end_points_and_increase(make):
    gam = make(-9.0, 4.0)
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    g = gam(t)
    assert abs(g[0].item() + 9.0) < 1e-6 and abs(g[-1].item() - 4.0) < 1e-6
    assert (g[1:] > g[:-1]).all()


def test_cosine_log_snr_is_cos_squared():
    gam = vdm.CosineLogSNR(-13.3, 5.0)
    t = torch.rand(50, dtype=torch.float64)
    u = gam.a + (gam.b - gam.a) * t
    alpha2 = torch.sigmoid(-gam(t))
    assert torch.allclose(alpha2, torch.cos(u) ** 2, rtol=1e-10)


def test_monotone_network_is_monotone_for_any_weights_and_gets_gradients():
    net = vdm.MonotoneLogSNR(features=16).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 3)  # negative raw weights too
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    g = net(t)
    assert (g[1:] > g[:-1]).all()
    g.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("gamma_0", [None, -13.3])
def test_table_log_snr_passes_through_the_schedule_and_steps_inverts_it(gamma_0):
    s = NoiseSchedule.make("cosine", 100)
    table = vdm.TableLogSNR(s, gamma_0)
    ls = -log_snr(s.alphas_cumprod)
    i = torch.arange(1, 101, dtype=torch.float64)
    t = (i - 1) / 99.0 if gamma_0 is None else i / 100.0
    assert torch.allclose(table(t), ls[1:], rtol=1e-9, atol=1e-9)
    tt = torch.rand(64, dtype=torch.float64)
    steps = table.steps(table(tt))
    want = 1 + tt * 99 if gamma_0 is None else tt * 100
    assert torch.allclose(steps, want, atol=1e-7)


def test_continuous_loss_is_the_limit_of_the_discrete_one_draw_by_draw():
    gam, model = vdm.CosineLogSNR(), vdm.gaussian_denoiser(MU, S2)
    x, eps = MU + S2.sqrt() * torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    T = 100_000
    i = torch.tensor([3_000, 10_000, 40_000, 50_000, 70_000, 99_000])
    disc = vdm.discrete_diffusion_loss(gam, model, x, i, T, eps)
    cont = vdm.continuous_diffusion_loss(gam, model, x, i.double() / T, eps)
    assert torch.allclose(disc, cont, rtol=1e-3)


def test_eps_form_equals_the_x_form_of_the_paper():
    """½ γ′ ‖ε − ε̂‖² = −½ SNR′(t) ‖x − x̂‖² with x̂ = (z_t − σ_t ε̂)/α_t."""
    gam, model = vdm.CosineLogSNR(), vdm.gaussian_denoiser(MU, S2)
    x, eps = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    tt = t.clone().requires_grad_(True)
    snr = torch.exp(-gam(tt))
    (dsnr,) = torch.autograd.grad(snr.sum(), tt)
    g = gam(t)
    a, s = vdm.alpha_sigma(g)
    z = a[:, None] * x + s[:, None] * eps
    x_hat = (z - s[:, None] * model(z, g)) / a[:, None]
    x_form = -0.5 * dsnr * ((x - x_hat) ** 2).sum(1)
    assert torch.allclose(vdm.continuous_diffusion_loss(gam, model, x, t, eps), x_form, rtol=1e-8)


@pytest.mark.parametrize("make", [vdm.LinearLogSNR, vdm.CosineLogSNR])
def test_discrete_bound_falls_to_the_continuous_one_like_one_over_T(make):
    gam = make()
    L_inf = vdm.gaussian_diffusion_loss(gam, S2)
    d = [vdm.gaussian_diffusion_loss(gam, S2, T) - L_inf for T in (10_000, 20_000, 40_000)]
    assert all(v > 0 for v in d) and d[0] > d[1] > d[2]  # more steps, lower loss, above L_∞
    assert abs(d[0] / d[1] - 2) < 0.05 and abs(d[1] / d[2] - 2) < 0.05


def test_continuous_loss_depends_on_the_schedule_only_through_its_end_points():
    a, b = vdm.gaussian_diffusion_loss(vdm.LinearLogSNR(), S2), vdm.gaussian_diffusion_loss(vdm.CosineLogSNR(), S2)
    assert torch.allclose(a, b, rtol=1e-12)
    # and the Monte Carlo estimates agree with the closed form
    g = torch.Generator().manual_seed(0)
    x = MU + S2.sqrt() * torch.randn(40_000, 2, generator=g, dtype=torch.float64)
    for gam in (vdm.LinearLogSNR(), vdm.CosineLogSNR()):
        L = vdm.diffusion_loss(gam, vdm.gaussian_denoiser(MU, S2), x, g)
        assert abs(L.mean() - a) < 4 * L.std() / math.sqrt(len(L))
    # a discrete bound does depend on the schedule
    assert vdm.gaussian_diffusion_loss(vdm.CosineLogSNR(), S2, 10) > 2 * vdm.gaussian_diffusion_loss(vdm.LinearLogSNR(), S2, 10)


def test_discrete_monte_carlo_matches_its_closed_form():
    g = torch.Generator().manual_seed(1)
    x = MU + S2.sqrt() * torch.randn(40_000, 2, generator=g, dtype=torch.float64)
    gam = vdm.LinearLogSNR()
    L = vdm.diffusion_loss(gam, vdm.gaussian_denoiser(MU, S2), x, g, T=10)
    assert abs(L.mean() - vdm.gaussian_diffusion_loss(gam, S2, 10)) < 4 * L.std() / math.sqrt(len(L))


def test_prior_kl_and_reconstruction():
    x = torch.tensor([[-1.0, 1.0, 3 / 255]], dtype=torch.float64)
    gam = vdm.LinearLogSNR(-13.3, 5.0)
    a2, s2 = torch.sigmoid(torch.tensor(-5.0, dtype=torch.float64)), torch.sigmoid(torch.tensor(5.0, dtype=torch.float64))
    want = 0.5 * (a2 * x**2 + s2 - torch.log(s2) - 1).sum()
    assert torch.allclose(vdm.prior_kl(gam, x), want.reshape(1), rtol=1e-10)
    # a tiny σ_0: the decoder is certain; a huge one: close to uniform over the 256 levels
    assert vdm.reconstruction_nll(vdm.LinearLogSNR(-30.0, 5.0), x).item() < 1e-6
    nll = vdm.reconstruction_nll(vdm.LinearLogSNR(8.0, 9.0), x, torch.Generator().manual_seed(0))
    assert abs(nll.item() - 3 * math.log(256)) < 0.05
    with pytest.raises(ValueError, match="levels"):
        vdm.reconstruction_nll(gam, x + 0.001)


def test_reconstruction_matches_a_hand_written_softmax():
    x = torch.tensor([[0.0 / 127.5 - 1, 200 / 127.5 - 1]], dtype=torch.float64)
    gam = vdm.LinearLogSNR(-9.0, 5.0)
    g = torch.Generator().manual_seed(3)
    nll = vdm.reconstruction_nll(gam, x, g)
    e = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = x + math.exp(-4.5) * e
    grid = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    logp = torch.log_softmax(-0.5 * (z[..., None] - grid) ** 2 / math.exp(-9.0), -1)
    want = -(logp[0, 0, 0] + logp[0, 1, 200])
    assert torch.allclose(nll, want.reshape(1), rtol=1e-9)


def test_vdm_loss_gives_the_model_the_mean_and_the_schedule_the_mean_square():
    torch.manual_seed(0)
    gam = vdm.MonotoneLogSNR(features=8).double()
    net = torch.nn.Linear(3, 2).double()
    model = lambda z, g: net(torch.cat([z, g[:, None] / 10], 1))  # noqa: E731
    x = torch.randn(16, 2, dtype=torch.float64)
    loss = vdm.vdm_loss(gam, model, x, torch.Generator().manual_seed(5))
    loss.backward()
    got_model = [p.grad.clone() for p in net.parameters()]
    got_sched = [p.grad.clone() for p in gam.parameters()]
    # the same draws, by hand
    t = vdm.sample_times(16, torch.Generator().manual_seed(5), dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    torch.rand(1, generator=g, dtype=torch.float64)
    eps = torch.randn(16, 2, generator=g, dtype=torch.float64)
    per = vdm.continuous_diffusion_loss(gam, model, x, t, eps)
    want_model = torch.autograd.grad(per.mean(), list(net.parameters()), retain_graph=True)
    want_sched = torch.autograd.grad((per**2).mean(), list(gam.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-8, atol=1e-12) for a, b in zip(got_model, want_model))
    assert all(torch.allclose(a, b, rtol=1e-8, atol=1e-12) for a, b in zip(got_sched, want_sched))


def test_eps_model_from_net_agrees_with_eps_from_v_at_the_steps():
    s = NoiseSchedule.make("cosine", 50)
    table = vdm.TableLogSNR(s)
    net = lambda z, step: 0.3 * z + 0.01 * step.to(z)[:, None]  # noqa: E731
    i = torch.tensor([1, 7, 25, 50])
    z = torch.randn(4, 3, dtype=torch.float64)
    got = vdm.eps_model_from_net(net, table, "v")(z, table((i - 1).double() / 49))
    want = EpsFromV(net, s)(z, i)
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-10)


def test_bound_runs_on_images_and_sums_its_terms():
    x = (torch.randint(0, 256, (3, 1, 4, 4)) / 127.5 - 1).double()
    b = vdm.vdm_bound(vdm.LinearLogSNR(), vdm.gaussian_denoiser(torch.zeros(1), torch.ones(1)), x,
                      torch.Generator().manual_seed(0), n_t=2)
    assert b.total.shape == (3,) and torch.allclose(b.total, b.prior + b.diffusion + b.reconstruction)
    assert torch.allclose(b.bits_per_dim, b.total / (16 * math.log(2)))


def test_bad_inputs_give_clear_errors():
    gam, model = vdm.LinearLogSNR(), vdm.gaussian_denoiser(MU, S2)
    x, eps = torch.randn(3, 2), torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vdm.continuous_diffusion_loss(gam, model, x, torch.tensor([0.2, 1.2, 0.5]), eps)
    with pytest.raises(ValueError, match="increase"):
        vdm.continuous_diffusion_loss(lambda t: 5 - 18 * t, model, x, torch.rand(3), eps)
    with pytest.raises(ValueError, match="increase"):
        vdm.discrete_diffusion_loss(lambda t: 5 - 18 * t, model, x, torch.tensor([1, 2, 3]), 10, eps)
    with pytest.raises(ValueError, match="1..T"):
        vdm.discrete_diffusion_loss(gam, model, x, torch.tensor([0, 2, 3]), 10, eps)
    with pytest.raises(TypeError, match="integer"):
        vdm.discrete_diffusion_loss(gam, model, x, torch.tensor([1.0, 2.0, 3.0]), 10, eps)
    with pytest.raises(ValueError, match="shaped like x"):
        vdm.continuous_diffusion_loss(gam, model, x, torch.rand(3), torch.randn(3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        vdm.diffusion_loss(gam, model, torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shaped like x_t"):
        vdm.diffusion_loss(gam, lambda z, g: z[:, :1], x)
    with pytest.raises(TypeError, match="float tensor"):
        gam(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="gamma_0 < gamma_1"):
        vdm.LinearLogSNR(3.0, -3.0)
    with pytest.raises(ValueError, match="gamma_0 < gamma_1"):
        vdm.TableLogSNR(NoiseSchedule.make("cosine", 100), gamma_0=0.0)


def test_benchmark_quick_path_runs():
    """benchmarks/objectives_vdm.py --quick: the `## VDM` section on tiny sizes (a few seconds)."""

    from minidiff.data.mnist import MNISTError, load_mnist

    try:
        load_mnist("test")
    except MNISTError:
        pytest.skip("MNIST files not found")
    module = load_benchmark("objectives_vdm")
    text, results = module.section(quick=True)
    assert text.startswith("## VDM") and "| VDM bound" in text and results["quick"]
    assert abs(results["convergence"]["linear"]["slope_T_ge_1000"] + 1) < 0.05
