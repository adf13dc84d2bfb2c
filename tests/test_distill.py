"""minidiff.distill: the grid, the target x̃ (one DDIM step lands on two), the loss, a round of training."""

import pytest
import torch

from minidiff import distill
from minidiff.ddim import ddim_sample, ddim_step
from minidiff.schedules import NoiseSchedule
from minidiff.unet import UNet
from minidiff.vpred import EpsFromV, x0_from_v

torch.set_num_threads(1)
S = NoiseSchedule.make("cosine", 1000)


def test_grid_halves():
    for n in (1, 2, 4, 8, 16, 32):
        assert torch.equal(distill.student_grid(1000, 2 * n)[::2], distill.student_grid(1000, n))
    assert distill.student_grid(1000, 1).tolist() == [1000, 0]


@pytest.mark.parametrize("shape,dtype", [((5, 2), torch.float32), ((5, 1, 4, 4), torch.float64)])
def test_target_makes_one_step_land_on_x_next(shape, dtype):
    g = torch.Generator().manual_seed(0)
    x_t, x_next = torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)
    t, tn = torch.tensor([1000, 600, 300, 40, 2]), torch.tensor([500, 0, 100, 39, 0])
    x = distill.distillation_target(S, x_t, t, x_next, tn)
    assert x.dtype == dtype and x.shape == shape
    x_t64, x64 = x_t.double(), x.double()  # the landing in float64: near t = T, α_t is tiny and float32 loses digits
    a, sig = distill.alpha_sigma(S, t, x_t64)
    landed = ddim_step(S, (x_t64 - a * x64) / sig, x_t64, t, tn)
    assert torch.allclose(landed, x_next.double(), atol=1e-4 if dtype == torch.float32 else 1e-10)
    assert torch.allclose(x[tn == 0], x_next[tn == 0])
    with pytest.raises(ValueError, match="earlier"):
        distill.distillation_target(S, x_t, t, x_next, t)


def test_loss_is_zero_for_a_perfect_student_of_a_linear_teacher():
    """A teacher whose x̂_0 is x_t's own data (ε-model of a point mass at c): two teacher steps and one student step
    agree exactly when the student predicts v of that same x_0 = c, so the loss is 0."""
    c = 0.3

    def teacher(x_t, t):
        a, sig = distill.alpha_sigma(S, t, x_t)
        return (x_t - a * c) / sig

    def student(x_t, t):
        a, sig = distill.alpha_sigma(S, t, x_t)
        eps = (x_t - a * c) / sig
        return a * eps - sig * c

    x0 = torch.full((16, 1, 4, 4), c)
    loss = distill.distill_loss(S, teacher, 4, student, x0, torch.Generator().manual_seed(0), clip_denoised=None)
    assert loss.item() < 1e-6


def test_round_trains_the_student_and_keeps_the_teacher():
    torch.manual_seed(0)
    net = UNet(1, (4, 8), attention=False)
    torch.nn.init.normal_(net.conv_out.weight, std=0.05)
    before = [p.clone() for p in net.parameters()]
    x = torch.rand(32, 1, 8, 8) * 2 - 1
    res = distill.distill_round(S, net, x, 2, 3, batch_size=4, lr=1e-3, show_progress=False)
    assert res.step == 3 and all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, res.model.parameters()))
    xs = ddim_sample(S, EpsFromV(res.model.eval(), S), (2, 1, 8, 8), steps=2, generator=torch.Generator().manual_seed(0))
    assert xs.shape == (2, 1, 8, 8) and torch.isfinite(xs).all()
    assert x0_from_v is not None
