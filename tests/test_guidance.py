"""Unit tests of minidiff.guidance, minidiff.eval.guidance and lesson 08's checks (they pass the reference, fail mistakes)."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import guidance as g
from minidiff.course.checks import lesson08 as check
from minidiff.data import GaussianMixture
from minidiff.eval.guidance import within_class_diversity
from minidiff.losses import ddpm_loss
from minidiff.sampling import ddpm_sample, ddpm_step
from minidiff.schedules import NoiseSchedule

torch.set_num_threads(1)


@pytest.fixture
def toy():
    return check.ToyConditional(num_classes=10, shape=(1, 4, 4))


# -- label dropout -----------------------------------------------------------------------


def test_label_dropout_rate_and_null_index():
    y = torch.randint(0, 10, (50_000,))
    out = g.label_dropout(y, 0.15, 10, torch.Generator().manual_seed(0))
    dropped = out != y
    assert (out[dropped] == 10).all()
    assert abs(dropped.float().mean().item() - 0.15) < 0.01
    assert out.dtype == torch.long and out.shape == y.shape


def test_label_dropout_edges_and_no_side_effect():
    y = torch.randint(0, 10, (100,))
    y0 = y.clone()
    assert torch.equal(g.label_dropout(y, 0.0, 10), y)
    assert (g.label_dropout(y, 1.0, 10) == 10).all()
    assert torch.equal(y, y0)


def test_label_dropout_reproducible_with_generator():
    y = torch.randint(0, 10, (1000,))
    a = g.label_dropout(y, 0.5, 10, torch.Generator().manual_seed(3))
    b = g.label_dropout(y, 0.5, 10, torch.Generator().manual_seed(3))
    c = g.label_dropout(y, 0.5, 10, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "args, err",
    [
        ((torch.tensor([1.0, 2.0]), 0.1, 10), TypeError),  # float labels
        ((torch.tensor([[1, 2]]), 0.1, 10), ValueError),  # not (B,)
        ((torch.tensor([1, 12]), 0.1, 10), ValueError),  # label out of range
        ((torch.tensor([1, 2]), 1.5, 10), ValueError),  # not a probability
        ((torch.tensor([1, 2]), 0.1, 0), ValueError),  # no classes
    ],
)
def test_label_dropout_errors(args, err):
    with pytest.raises(err):
        g.label_dropout(*args)


# -- the guided prediction -----------------------------------------------------------------


def test_guided_eps_endpoints_and_linearity(toy):
    x = torch.randn(4, 1, 4, 4)
    t = torch.tensor([1, 10, 500, 1000])
    y = torch.tensor([0, 3, 9, 10])  # the last one asks for ∅: guidance leaves it unconditional
    e_y, e_0 = toy(x, t, y), toy(x, t, None)
    assert torch.allclose(g.guided_eps(toy, x, t, y, 0.0), e_0)
    assert torch.allclose(g.guided_eps(toy, x, t, y, 1.0), e_y)
    e3 = g.guided_eps(toy, x, t, y, 3.0)
    assert torch.allclose(e3, e_0 + 3 * (e_y - e_0), atol=1e-6)
    assert torch.allclose(e3[3], e_0[3], atol=1e-6)
    # the other convention, (1 + w')ε(y) − w'ε(∅), is ours with w = 1 + w'
    assert torch.allclose(g.guided_eps(toy, x, t, y, 1 + 2.0), 3.0 * e_y - 2.0 * e_0, atol=1e-6)


def test_guided_eps_one_batched_pass(toy):
    x = torch.randn(3, 1, 4, 4)
    t = torch.tensor([5, 6, 7])
    toy.calls = 0
    g.guided_eps(toy, x, t, torch.tensor([1, 2, 3]), 2.5)
    assert toy.calls == 1


def test_guided_eps_per_sample_scale(toy):
    x = torch.randn(3, 1, 4, 4)
    t = torch.tensor([50, 50, 50])
    y = torch.tensor([1, 1, 1])
    w = torch.tensor([0.0, 1.0, 4.0])
    out = g.guided_eps(toy, x, t, y, w)
    for i in range(3):
        assert torch.allclose(out[i:i + 1], g.guided_eps(toy, x[i:i + 1], t[i:i + 1], y[i:i + 1], float(w[i])), atol=1e-6)


def test_guided_eps_errors(toy):
    x = torch.randn(2, 1, 4, 4)
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="labels"):
        g.guided_eps(toy, x, t, torch.tensor([1]), 2.0)
    with pytest.raises(TypeError):
        g.guided_eps(toy, x, t, torch.tensor([1.0, 2.0]), 2.0)
    with pytest.raises(ValueError):
        g.guided_eps(toy, x, t, torch.tensor([1, 2]), torch.ones(3))
    unconditional = check.ToyConditional()
    unconditional.num_classes = None
    with pytest.raises(ValueError, match="not conditional"):
        g.guided_eps(unconditional, x, t, torch.tensor([1, 2]), 2.0)


def test_guided_model_plugs_into_ddpm(toy):
    schedule = NoiseSchedule.make("linear", T=20)
    y = torch.tensor([2, 7])
    wrapped = g.guided_model(toy, y, 3.0)
    x = torch.randn(2, 1, 4, 4)
    t = torch.tensor([20, 20])
    noise = torch.randn_like(x)
    a = ddpm_step(schedule, wrapped, x, t, noise=noise)
    b = g.guided_ddpm_step(schedule, toy, x, t, y, 3.0, noise=noise)
    c = ddpm_step(schedule, g.guided_eps(toy, x, t, y, 3.0), x, t, noise=noise)
    assert torch.allclose(a, b) and torch.allclose(a, c)
    out = ddpm_sample(schedule, wrapped, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 4, 4) and torch.isfinite(out).all()


def test_guided_ddim_step_closed_form(toy):
    schedule = NoiseSchedule.make("linear", T=1000)
    x = torch.randn(2, 1, 4, 4)
    y = torch.tensor([4, 5])
    out = g.guided_ddim_step(schedule, toy, x, torch.tensor([700, 300]), torch.tensor([600, 0]), y, 2.0)
    eps = g.guided_eps(toy, x, torch.tensor([700, 300]), y, 2.0)
    ab = schedule.alphas_cumprod.float()
    x0 = (x - (1 - ab[[700, 300]]).sqrt().view(-1, 1, 1, 1) * eps) / ab[[700, 300]].sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(out[1], x0[1], atol=1e-5)  # t_prev = 0: x̂_0
    expected0 = ab[600].sqrt() * x0[0] + (1 - ab[600]).sqrt() * eps[0]
    assert torch.allclose(out[0], expected0, atol=1e-5)
    with pytest.raises(ValueError, match="t_prev"):
        g.guided_ddim_step(schedule, toy, x, torch.tensor([5, 5]), torch.tensor([5, 4]), y, 2.0)


# -- Bayes' rule on an exact mixture --------------------------------------------------------


def test_implicit_classifier_is_bayes_gradient():
    mix = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.6)
    schedule = NoiseSchedule.make("linear", T=1000)
    model = g.MixtureEps(schedule, mix)
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.tensor([5, 200, 600, 999])
    y = torch.tensor([0, 1, 1, 0])
    grad = g.implicit_classifier_grad(schedule, model(x, t, y), model(x, t, None), t)
    xs = x.clone().requires_grad_(True)
    logp = sum(
        torch.log(mix.noised(schedule.alphas_cumprod[t[i]].item()).responsibilities(xs[i:i + 1]))[0, y[i]]
        for i in range(4)
    )
    assert torch.allclose(grad, torch.autograd.grad(logp, xs)[0], atol=1e-8)


def test_mixture_eps_unconditional_matches_noised_score():
    mix = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), 0.3)
    schedule = NoiseSchedule.make("linear", T=100)
    model = g.MixtureEps(schedule, mix)
    x = torch.randn(3, 2)
    t = torch.tensor([10, 50, 90])
    ab = schedule.alphas_cumprod[t]
    expected = -(1 - ab).sqrt()[:, None].float() * mix.noised_score(x, ab)
    assert torch.allclose(model(x, t), expected, atol=1e-6)
    # a single class: the model is that Gaussian's exact ε
    one = GaussianMixture(mix.means[1:], 0.3)
    assert torch.allclose(model(x, t, torch.tensor([1, 1, 1])), -(1 - ab).sqrt()[:, None].float() * one.noised_score(x, ab), atol=1e-6)


def test_guidance_sharpens_exact_mixture_samples():
    """Guided DDPM with the exact mixture model: w = 1 samples class k, w > 1 pushes away from the rest."""
    mix = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.7)
    schedule = NoiseSchedule.make("linear", T=200, beta_1=5e-4, beta_T=0.1)
    model = g.MixtureEps(schedule, mix)
    y = torch.ones(2000, dtype=torch.long)
    means = {}
    for w in (0.0, 1.0, 4.0):
        x = ddpm_sample(schedule, g.guided_model(model, y, w), (2000, 2), generator=torch.Generator().manual_seed(1))
        means[w] = x[:, 0].mean().item()
    assert abs(means[0.0]) < 0.1  # unconditional: both classes
    assert abs(means[1.0] - 1.0) < 0.1  # conditional: class 1, mean at μ_1
    assert means[4.0] > means[1.0] + 0.2  # guided: further from class 0


# -- diversity ---------------------------------------------------------------------------------


def test_within_class_diversity_closed_form():
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0], [10.0, 2.0], [10.0, 4.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # class 0: one pair at distance 5; class 1: pairs at 2, 2, 4 → mean 8/3
    assert math.isclose(within_class_diversity(f, labels), (5 + 8 / 3) / 2, rel_tol=1e-9)
    with pytest.raises(ValueError):
        within_class_diversity(f[:1], labels[:1])


# -- the checks accept the reference and reject common mistakes -------------------------------


def _score(fn_check, *objs):
    return fn_check(*objs, quiet=True)


def test_checks_pass_reference():
    for name, fn in [("cfg_loss", g.cfg_loss), ("guided_eps", g.guided_eps), ("guided_sample", g.guided_sample)]:
        r = _score(getattr(check, name), fn)
        assert r.status == "ok" and r.passed == r.total > 0, (name, r.messages)


def _loss_with(drop_to, inverted=False):
    def loss(schedule, model, batch, generator=None, p_uncond=0.2):
        x0, y = batch
        u = torch.rand(y.shape, generator=generator)
        drop = u > p_uncond if inverted else u < p_uncond
        y = torch.where(drop, torch.full_like(y, drop_to if drop_to is not None else model.num_classes), y)
        return ddpm_loss(schedule, lambda x_t, t: model(x_t, t, y), x0, generator)
    return loss


def _ddim_sample(clip_eps=True, last=True, w_used=True):
    @torch.no_grad()
    def sample(schedule, model, y, w, shape, steps=20, generator=None, clip_denoised=1.0, device=None):
        def step(x, t, t_prev):
            eps = g.guided_eps(model, x, torch.full_like(y, t), y, w if w_used else 1.0)
            ab, abp = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[t_prev].item()
            x0 = (x - (1 - ab) ** 0.5 * eps) / ab**0.5
            if clip_denoised is not None:
                x0 = x0.clamp(-clip_denoised, clip_denoised)
                if clip_eps:
                    eps = (x - ab**0.5 * x0) / (1 - ab) ** 0.5
            return abp**0.5 * x0 + (1 - abp) ** 0.5 * eps

        from minidiff.ddim import ddim_timesteps
        from minidiff.sampling import simulate
        from minidiff.utils import randn
        ts = ddim_timesteps(schedule.T, steps) + ([0] if last else [])
        return simulate(step, randn((len(y), *shape), generator), ts)
    return sample


def test_checks_reject_mistakes():
    def other_convention(model, x, t, y, w):
        return (1 + w) * model(x, t, y) - w * model(x, t, None)

    def two_passes(model, x, t, y, w):
        e_y, e_n = model(x, t, y), model(x, t, None)
        return e_n + (w.reshape(-1, 1, 1, 1) if isinstance(w, torch.Tensor) else w) * (e_y - e_n)

    for chk, fn, hint in [
        (check.cfg_loss, _loss_with(None, inverted=True), "torch.rand(...) < p_uncond"),
        (check.cfg_loss, _loss_with(0), "not 0 or −1"),
        (check.guided_eps, other_convention, "the other convention"),
        (check.guided_eps, two_passes, "eps.chunk(2)"),
        (check.guided_sample, _ddim_sample(clip_eps=False), "recompute ε̃"),
        (check.guided_sample, _ddim_sample(last=False), "t_prev = 0"),
        (check.guided_sample, _ddim_sample(w_used=False), "guided ε̃"),
    ]:
        r = _score(chk, fn)
        assert r.passed < r.total and any(hint in m for m in r.messages), (chk.__name__, r.messages)


def test_checks_of_a_stub_say_not_attempted():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for chk in (check.cfg_loss, check.guided_eps, check.guided_sample):
        r = _score(chk, stub)
        assert r.status == "not attempted" and r.score == 0


# -- agreement with the other modules that implement the same idea ----------------------------


def test_cfg_loss_is_label_dropout_then_ddpm_loss(toy):
    schedule = NoiseSchedule.make("linear", T=50)
    x0, y = torch.randn(8, 1, 4, 4), torch.randint(0, 10, (8,))
    a = g.cfg_loss(schedule, toy, (x0, y), torch.Generator().manual_seed(7), p_uncond=0.4)
    gen = torch.Generator().manual_seed(7)
    y_dropped = g.label_dropout(y, 0.4, 10, gen)
    b = ddpm_loss(schedule, lambda x_t, t: toy(x_t, t, y_dropped), x0, gen)
    assert torch.allclose(a, b)


def test_guided_model_with_ddim_sampler_equals_guided_ddim_steps(toy):
    from minidiff.ddim import ddim_sample, ddim_timesteps

    schedule = NoiseSchedule.make("linear", T=100)
    y = torch.tensor([3, 8])
    out = ddim_sample(schedule, g.guided_model(toy, y, 2.0), (2, 1, 4, 4), steps=5,
                      generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ts = ddim_timesteps(100, 5) + [0]
    for t, t_prev in zip(ts[:-1], ts[1:]):
        x = g.guided_ddim_step(schedule, toy, x, t, t_prev, y, 2.0)
    assert torch.allclose(out, x, atol=1e-5)


def test_guided_sample_is_ddim_on_the_guided_model():
    from minidiff.ddim import ddim_sample
    from minidiff.unet import UNet

    torch.manual_seed(0)
    net = UNet(1, (8, 16), attention=False, num_classes=10).eval()
    for p in net.parameters():  # a fresh U-Net predicts ε = 0 (zero-initialised output conv): perturb it
        p.data += 0.05 * torch.randn_like(p)
    schedule = NoiseSchedule.make("linear", T=50)
    digits = torch.tensor([0, 5, 9])
    a = g.guided_sample(schedule, net, digits, 2.0, (1, 28, 28), steps=3, generator=torch.Generator().manual_seed(1),
                        batch_size=2)
    b = g.guided_sample(schedule, net, digits, 2.0, (1, 28, 28), steps=3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 1, 28, 28) and torch.allclose(a, b, atol=1e-5)  # batching does not change the images
    with torch.no_grad():
        c = ddim_sample(schedule, lambda x, t: net(x, t, digits), (3, 1, 28, 28), steps=3,
                        generator=torch.Generator().manual_seed(1), clip_denoised=1.0)
    d = g.guided_sample(schedule, net, digits, 1.0, (1, 28, 28), steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(c, d, atol=1e-5)  # w = 1 is the plain conditional model
    assert not torch.allclose(a, d, atol=1e-3)  # and w = 2 is not


def test_shipped_conditional_checkpoint():
    """data/checkpoints/unet_cond: hash-verified, conditional with ∅ = 10, card says how it was made."""
    from minidiff.checkpoints import load_checkpoint, read_card
    from minidiff.unet import UNet

    net = load_checkpoint("unet_cond", UNet)
    card = read_card("unet_cond")
    assert net.num_classes == 10 and net.class_emb.weight.shape[0] == 11
    assert "train_unet" in card["command"] and "--num-classes 10" in card["command"]
    init = card["training"].get("init")
    if init:  # fine-tuned from the shipped unconditional model, whose ∅ branch starts trained
        assert init["name"] == "unet_mnist" and "--init unet_mnist" in card["command"]
        assert init["sha256"] == read_card("unet_mnist")["sha256"]  # the very file that ships
        assert card["training"]["p_uncond"] == 0.5 and card["training"]["class_lr"] > card["training"]["lr"]
    else:  # from scratch: Ho & Salimans' label dropout
        assert 0.1 <= card["training"]["p_uncond"] <= 0.2
    with torch.no_grad():  # ∅'s row of the class embedding: held at zero when fine-tuned, trained from scratch
        assert (net.class_emb.weight[10].abs().max() == 0) == bool(init)
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([500, 500])
    with torch.no_grad():  # the label changes the prediction: the class embedding was trained
        assert not torch.allclose(net(x, t, torch.tensor([1, 1])), net(x, t, torch.tensor([7, 7])), atol=1e-3)
