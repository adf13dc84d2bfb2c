"""minidiff.vpred (v-prediction, min-SNR-γ, EpsFromV), the EMA warm-up and load_eps_model:
the closed forms checked numerically, and the wrapper used by the samplers."""


import pytest
import torch

from minidiff.checkpoints import load_eps_model, save_checkpoint, update_card
from minidiff.ddim import ddim_sample
from minidiff.ema import EMA
from minidiff.forward import add_noise, predict_x0
from minidiff.guidance import cfg_loss
from minidiff.schedules import NoiseSchedule
from minidiff.unet import UNet
from minidiff.vpred import EpsFromV, eps_from_v, min_snr_weight, v_loss, velocity, x0_from_v

torch.set_num_threads(1)


@pytest.fixture(params=["linear", "cosine"])
def schedule(request):
    return NoiseSchedule.make(request.param, 1000)


def draws(seed=0, shape=(8, 1, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


def test_v_is_a_rotation_of_x0_and_eps(schedule):
    x0, noise = draws()
    t = torch.tensor([1, 2, 10, 100, 500, 900, 999, 1000])
    x_t = add_noise(schedule, x0, noise, t)
    v = velocity(schedule, x0, noise, t)
    assert torch.allclose(eps_from_v(schedule, x_t, v, t), noise, atol=1e-9)
    assert torch.allclose(x0_from_v(schedule, x_t, v, t), x0, atol=1e-9)
    # ‖x_t‖² + ‖v‖² = ‖x_0‖² + ‖ε‖² per image: (x_t, v) is (x_0, ε) rotated
    lhs = x_t.flatten(1).pow(2).sum(1) + v.flatten(1).pow(2).sum(1)
    rhs = x0.flatten(1).pow(2).sum(1) + noise.flatten(1).pow(2).sum(1)
    assert torch.allclose(lhs, rhs)
    # the x̂_0 of an ε-sampler, fed ε̂ from v, is the same as x0_from_v (away from ᾱ ≈ 0)
    mid = t < 900
    eps = eps_from_v(schedule, x_t, v, t)
    assert torch.allclose(predict_x0(schedule, x_t[mid], t[mid], eps[mid]), x0[mid], atol=1e-6)


def test_v_at_the_ends(schedule):
    x0, noise = draws()
    v1 = velocity(schedule, x0, noise, torch.ones(8, dtype=torch.long))
    abar1 = schedule.alphas_cumprod[1].item()
    assert torch.allclose(v1, abar1 ** 0.5 * noise - (1 - abar1) ** 0.5 * x0)
    vT = velocity(schedule, x0, noise, torch.full((8,), 1000))
    abarT = schedule.alphas_cumprod[1000].item()  # ≈ 0: v_T ≈ −x_0, off by √ᾱ_T ε (|ε| < 5 here)
    assert torch.allclose(vT, -x0, atol=5 * abarT ** 0.5 + 1e-6)


def test_min_snr_weights():
    snr = torch.tensor([0.01, 1.0, 5.0, 100.0], dtype=torch.float64)
    gamma = torch.tensor(5.0, dtype=torch.float64)
    assert torch.allclose(min_snr_weight(snr, 5.0, "eps"), torch.minimum(snr, gamma) / snr)
    assert torch.allclose(min_snr_weight(snr, 5.0, "v"), torch.minimum(snr, gamma) / (snr + 1))
    # both weigh the x_0-error by min(SNR, γ): ‖ε − ε̂‖² = SNR ‖x_0 − x̂_0‖², ‖v − v̂‖² = (SNR + 1) ‖x_0 − x̂_0‖²
    assert torch.allclose(min_snr_weight(snr, 5.0, "eps") * snr, min_snr_weight(snr, 5.0, "v") * (snr + 1))


def test_v_loss_is_zero_for_the_true_v_and_weights_apply():
    s = NoiseSchedule.make("cosine", 1000)
    x0 = torch.randn(6, 1, 4, 4)
    g = torch.Generator().manual_seed(0)

    def oracle(x_t, t):  # knows x0, so returns the exact v: √ᾱ ε − √(1−ᾱ) x0 with ε read from x_t
        abar = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        noise = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return velocity(s, x0, noise, t)

    assert v_loss(s, oracle, x0, g).item() < 1e-8
    zero = lambda x_t, t: torch.zeros_like(x_t)  # noqa: E731
    plain = v_loss(s, zero, x0, torch.Generator().manual_seed(1))
    weighted = v_loss(s, zero, x0, torch.Generator().manual_seed(1), min_snr_gamma=5.0)
    assert weighted.item() < plain.item()  # every min-SNR weight of a v-loss is ≤ 1, most < 1
    with pytest.raises(ValueError, match="shaped like x_t"):
        v_loss(s, lambda x_t, t: x_t[:, :, :2], x0, g)


def test_eps_from_v_wrapper_samples_like_an_eps_model():
    s = NoiseSchedule.make("cosine", 1000)
    torch.manual_seed(0)
    net = UNet(channels=(8, 16), num_classes=10, heads=2).eval()
    wrapped = EpsFromV(net, s)
    assert wrapped.num_classes == 10
    x = torch.randn(3, 1, 16, 16)
    t = torch.tensor([5, 500, 1000])
    y = torch.tensor([1, 2, 10])
    with torch.no_grad():
        assert torch.allclose(wrapped(x, t, y), eps_from_v(s, x, net(x, t, y), t))
        out = ddim_sample(s, lambda x_t, t: wrapped(x_t, t, y), (3, 1, 16, 16), steps=5,
                          generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(TypeError, match="integer timesteps"):
        wrapped(x, t.float(), y)


def test_cfg_loss_with_v_loss_trains_the_conditional_v_model():
    s = NoiseSchedule.make("cosine", 1000)
    torch.manual_seed(0)
    net = UNet(channels=(8, 16), num_classes=10, heads=2)
    x0, y = torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 3])
    loss = cfg_loss(s, net, (x0, y), torch.Generator().manual_seed(0), p_uncond=0.5, loss=v_loss)
    loss.backward()
    assert loss.item() > 0 and all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_ema_warmup_forgets_the_initial_weights():
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    plain, warm = EMA(lin, 0.999), EMA(lin, 0.999, warmup=True)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    for _ in range(100):
        plain.update(lin)
        warm.update(lin)
    assert abs(plain.model.weight.item() - (1 - 0.999 ** 100)) < 1e-5  # still 90 % initial weights
    # warm-up: θ_ema = 1 − Π_n d_n with d_n = min(0.999, (1 + n)/(10 + n))
    keep = 1.0
    for n in range(100):
        keep *= min(0.999, (1 + n) / (10 + n))
    assert abs(warm.model.weight.item() - (1 - keep)) < 1e-5 and warm.model.weight.item() > 0.99
    assert warm.current_decay() == pytest.approx(min(0.999, 101 / 110))
    again = EMA(lin, 0.5)
    again.load_state_dict(warm.state_dict())
    assert again.warmup and again.num_updates == 100 and again.decay == 0.999


def test_load_eps_model_wraps_v_models_with_the_card_schedule(tmp_path):
    torch.manual_seed(0)
    net = UNet(channels=(8, 16), heads=2)
    save_checkpoint(net, tmp_path / "v", card={"schedule": {"name": "cosine", "T": 500}, "prediction": "v"})
    model, s = load_eps_model(tmp_path / "v", UNet)
    assert isinstance(model, EpsFromV) and s.name == "cosine" and s.T == 500
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 400])
    with torch.no_grad():
        assert torch.allclose(model(x, t), eps_from_v(s, x, net(x, t), t), atol=1e-6)
    save_checkpoint(net, tmp_path / "e", card={"schedule": {"name": "linear", "T": 1000}, "prediction": "eps"})
    model, s = load_eps_model(tmp_path / "e", UNet)
    assert isinstance(model, UNet) and s.name == "linear"
    update_card(tmp_path / "e", prediction="x0")
    with pytest.raises(Exception, match="prediction 'x0'"):
        load_eps_model(tmp_path / "e", UNet)


def test_guided_sampling_through_the_wrapper():
    from minidiff.guidance import guided_sample

    s = NoiseSchedule.make("cosine", 1000)
    torch.manual_seed(0)
    wrapped = EpsFromV(UNet(channels=(8, 16), num_classes=10, heads=2).eval(), s)
    x = guided_sample(s, wrapped, torch.tensor([3, 7]), 3.0, (1, 16, 16), steps=3,
                      generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all() and x.abs().max() <= 1.0 + 1e-6
