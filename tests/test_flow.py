"""minidiff.flow (lesson 12): closed forms and identities.

* the straight path and its loss: endpoints, the loss of a model with a known error, gradients, given ε;
* Euler over `simulate` on v = c x (closed form (1 − c/N)^N) and the exact gmm8 flow (Heun converges at order 2);
* conversions v ↔ (x_0, ε, score) on the straight, cosine and VP paths, round trips to float64 round-off;
* the exact mixture velocity equals the velocity read from the mixture's exact score;
* lesson 09's PF-ODE read in flow coordinates equals the exact flow velocity (round-off);
* the weighting w(λ): e^(−λ/2) for flow matching, (2/π) e^(−λ/2) for cosine v-prediction, sech(λ/2)/π for ε;
* reflow: pairs are detached ODE solutions; a linear flow field is already straight (S = 0);
* bad inputs: t outside [0, 1], wrong shapes and dtypes give clear errors.
"""

import math

import pytest
import torch

from minidiff import flow as F
from minidiff.data.toy import GaussianMixture, gmm8
from minidiff.mlp import EpsMLP
from minidiff.sde import VPSDE, exact_eps_model

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_interpolate_endpoints_and_midpoint():
    x0, eps = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.equal(F.interpolate(x0, eps, 0.0), x0)
    assert torch.equal(F.interpolate(x0, eps, 1.0), eps)
    assert torch.allclose(F.interpolate(x0, eps, torch.full((5,), 0.5)), (x0 + eps) / 2)


class Affine(torch.nn.Module):
    def __init__(self, a=0.2):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a))

    def forward(self, x, t):
        return self.a * x


def test_flow_loss_exact_model_and_images():
    # v = ε − x_0 exactly when the model knows both: with eps given and x0 = 0, x_t = t ε and v* = ε = x_t / t
    eps = torch.randn(64, 1, 4, 4, dtype=torch.float64)
    x0 = torch.zeros_like(eps)
    model = lambda x, t: x / t.reshape(-1, 1, 1, 1)  # noqa: E731
    assert F.flow_loss(model, x0, gen(), eps=eps).item() < 1e-20
    loss = F.flow_loss(Affine().double(), eps, gen(1))
    assert loss.shape == () and loss.dtype == torch.float64 and loss.requires_grad


def test_flow_loss_expectation_and_gradient():
    # v = a x_t with x_0, ε independent N(0, I): E‖a x_t − (ε − x_0)‖² / D = a² E[(1−t)² + t²] − 2a E[t − (1 − t)] ... = 2a²/3 + 2
    model = Affine(0.5)
    loss = F.flow_loss(model, torch.randn(200_000, 2, generator=gen(2)), gen(3))
    assert abs(loss.item() - (2 * 0.25 / 3 + 2)) < 0.02
    loss.backward()
    assert abs(model.a.grad.item() - 4 * 0.5 / 3) < 0.02


def test_flow_loss_same_generator_same_loss():
    x0 = torch.randn(32, 2)
    m = Affine()
    assert torch.equal(F.flow_loss(m, x0, gen(4)), F.flow_loss(m, x0, gen(4)))


def test_euler_linear_field_closed_form():
    z = torch.randn(7, 2, dtype=torch.float64)
    for n in (1, 3, 10):
        out = F.euler_sample(lambda x, t: 0.7 * x, z, n)
        assert torch.allclose(out, z * (1 - 0.7 / n) ** n, rtol=1e-12)
    assert F.flow_timesteps(4) == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_heun_second_order_on_exact_flow():
    v = F.mixture_velocity(gmm8())
    z = torch.randn(64, 2, generator=gen(5), dtype=torch.float64)
    ref = F.euler_sample(v, z, 2000, method="heun")
    e1 = (F.euler_sample(v, z, 50, method="heun") - ref).abs().max().item()
    e2 = (F.euler_sample(v, z, 100, method="heun") - ref).abs().max().item()
    eu = (F.euler_sample(v, z, 100) - ref).abs().max().item()
    assert e2 < e1 and e2 < eu


@pytest.mark.parametrize("path", [F.straight_path(), F.cosine_path(), F.vp_path(VPSDE())], ids=lambda p: p.name)
def test_conversions_round_trip(path):
    x0 = torch.randn(16, 1, 3, 3, dtype=torch.float64)
    eps = torch.randn_like(x0)
    t = 0.05 + 0.9 * torch.rand(16, dtype=torch.float64)
    a, b, da, db = path.coefficients(t, x0)
    x_t, v = a * x0 + b * eps, da * x0 + db * eps
    x0_h, eps_h, score = F.from_velocity(path, x_t, v, t)
    assert torch.allclose(x0_h, x0, atol=1e-12) and torch.allclose(eps_h, eps, atol=1e-12)
    assert torch.allclose(score, -eps / b, atol=1e-12)
    assert torch.allclose(F.velocity_from_eps(path, x_t, eps, t), v, atol=1e-12)
    assert torch.allclose(F.velocity_from_x0(path, x_t, x0, t), v, atol=1e-12)
    h = 1e-6
    assert torch.allclose(path.da(t), (path.a(t + h) - path.a(t - h)) / (2 * h), atol=1e-7)
    assert torch.allclose(path.db(t), (path.b(t + h) - path.b(t - h)) / (2 * h), atol=1e-7)
    assert torch.allclose(path.dlog_snr(t), (path.log_snr(t + h) - path.log_snr(t - h)) / (2 * h), rtol=1e-6)


def test_from_velocity_keeps_float32():
    out = F.from_velocity(F.straight_path(), torch.randn(4, 2), torch.randn(4, 2), 0.3)
    assert all(o.dtype == torch.float32 for o in out)


def test_straight_path_closed_forms():
    x_t, v = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    t = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    x0, eps, _ = F.from_velocity(F.straight_path(), x_t, v, t)
    assert torch.allclose(x0, x_t - t[:, None] * v) and torch.allclose(eps, x_t + (1 - t[:, None]) * v)


def test_mixture_velocity_matches_score_route():
    means = torch.tensor([[1.0, -0.5], [-1.5, 0.3], [0.2, 2.0]])
    mix = GaussianMixture(means, torch.tensor([0.3, 0.5, 0.2]), torch.tensor([0.2, 0.5, 0.3]))
    x = 2 * torch.randn(128, 2, dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(128, dtype=torch.float64)
    c = torch.sqrt((1 - t) ** 2 + t**2)[:, None]
    score = mix.noised_score(x / c, ((1 - t[:, None]) / c)[:, 0] ** 2) / c
    v = F.velocity_from_eps(F.straight_path(), x, -t[:, None] * score, t)
    assert torch.allclose(F.mixture_velocity(mix)(x, t), v, atol=1e-11)
    # the endpoints: t = 1 gives x − E[x_0], t = 0 is finite
    v1 = F.mixture_velocity(mix)(x, 1.0)
    assert torch.allclose(v1, x - mix.mean(), atol=1e-12)
    assert torch.isfinite(F.mixture_velocity(mix)(x, 0.0)).all()


def test_pf_ode_is_the_flow_ode():
    sde, mix = VPSDE(), gmm8()
    x = 2 * torch.randn(256, 2, dtype=torch.float64)
    s = 0.02 + 0.97 * torch.rand(256, dtype=torch.float64)
    x_f, t_f, v = F.pf_ode_as_flow(sde, exact_eps_model(sde, mix), x, s)
    assert torch.allclose(v, F.mixture_velocity(mix)(x_f, t_f), rtol=1e-9, atol=1e-10)
    a, b = sde.mean_scale(s), sde.std(s)
    assert torch.allclose((1 - t_f) / t_f, a / b)


def test_loss_weights():
    lam = torch.linspace(-8, 8, 33, dtype=torch.float64)
    t_fm = 1 / (1 + torch.exp(lam / 2))
    t_cos = (2 / math.pi) * torch.atan(torch.exp(-lam / 2))
    w = F.loss_weight(F.straight_path(), t_fm)
    assert torch.allclose(w, torch.exp(-lam / 2), rtol=1e-10)
    assert torch.allclose(F.loss_weight(F.cosine_path(), t_cos, "v"), 2 / math.pi * w, rtol=1e-10)
    assert torch.allclose(F.loss_weight(F.cosine_path(), t_cos, "eps"), 1 / (math.pi * torch.cosh(lam / 2)), rtol=1e-10)
    assert torch.allclose(F.loss_weight(F.cosine_path(), t_cos, "x0"), torch.exp(-lam) / (math.pi * torch.cosh(lam / 2)), rtol=1e-10)


def test_reflow_pairs_and_straightness():
    net = EpsMLP(dim=2, hidden=16, depth=1, t_scale=1000)
    torch.nn.init.normal_(net.out.weight, std=0.5)
    x0, eps = F.reflow_pairs(net, 32, (2,), 8, gen(6))
    assert not x0.requires_grad and x0.shape == eps.shape == (32, 2)
    assert torch.allclose(x0, F.euler_sample(net, eps, 8))
    assert torch.equal(eps, torch.randn(32, 2, generator=gen(6)))
    loss = F.reflow_loss(net, (x0, eps), gen(7))
    loss.backward()
    assert net.out.weight.grad is not None
    # a constant field is straight; a rotating one is not
    z = torch.randn(64, 2, dtype=torch.float64)
    assert F.straightness(lambda x, t: torch.ones_like(x), z, 20) < 1e-24
    rot = lambda x, t: torch.stack([-x[:, 1], x[:, 0]], 1)  # noqa: E731
    assert F.straightness(rot, z, 20) > 0.1


def test_time_scaled_feeds_scaled_time():
    seen = []
    m = F.TimeScaled(lambda x, t: seen.append(t) or x, 1000.0)
    m(torch.zeros(3, 2), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(seen[0], torch.tensor([0.0, 500.0, 1000.0]))


def test_bad_inputs():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.interpolate(x, x, 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.euler_step(lambda y, t: y, x, 1.0, -0.5)
    with pytest.raises(ValueError, match="shape"):
        F.interpolate(x, torch.randn(4, 3), 0.5)
    with pytest.raises(TypeError, match="floating-point"):
        F.flow_loss(lambda y, t: y, torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="v_model"):
        F.flow_loss(lambda y, t: y[:, :1], x)
    with pytest.raises(ValueError, match="shape"):
        F.interpolate(x, x, torch.rand(3))
    with pytest.raises(ValueError, match="steps"):
        F.euler_sample(lambda y, t: y, x, 0)
    with pytest.raises(ValueError, match="prediction"):
        F.loss_weight(F.straight_path(), 0.5, "score")
    with pytest.raises(ValueError, match="inside"):
        F.loss_weight(F.straight_path(), torch.tensor([0.0, 0.5]))
    with pytest.raises(TypeError, match="pairs"):
        F.reflow_loss(lambda y, t: y, x)


def test_train_unet_objective_flow(tmp_path):
    """`train_unet --objective flow` ships the bare U-Net; TimeScaled around the loaded one is the velocity model."""
    from minidiff.checkpoints import load_checkpoint, read_card
    from minidiff.data.mnist import MNISTError, mnist_images
    from minidiff.scripts import train_unet
    from minidiff.unet import UNet

    try:
        mnist_images("test")
    except MNISTError:
        pytest.skip("the MNIST files are needed (set MINIDIFF_MNIST_DIR)")
    out = tmp_path / "flow_tiny"
    train_unet.main(["--objective", "flow", "--steps", "2", "--batch-size", "8", "--warmup", "1", "--channels", "8", "16",
                     "--threads", "1", "--device", "cpu", "--out", str(out), "--state", str(tmp_path / "state.pt")])
    card = read_card(out)
    assert card["objective"] == "flow" and card["prediction"] == "velocity"
    v = F.TimeScaled(load_checkpoint(out, UNet), 1000.0)
    x = F.euler_sample(v, torch.randn(2, 1, 28, 28), 2)
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
