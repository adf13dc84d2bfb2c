"""minidiff.schedules against closed forms, and its argument checks."""

import math

import pytest
import torch

from minidiff import schedules as S
from minidiff.schedules import NoiseSchedule, extract


@pytest.mark.parametrize("name", sorted(S.SCHEDULES))
def test_schedule_shapes_and_conventions(name):
    s = NoiseSchedule.make(name, T=100)
    assert len(s) == s.T == 100
    for v in (s.betas, s.alphas, s.alphas_cumprod, s.snr, s.log_snr):
        assert v.shape == (101,) and v.dtype == torch.float64
    assert s.betas[0] == 0 and s.alphas_cumprod[0] == 1  # t = 0: no noise
    assert ((s.betas[1:] > 0) & (s.betas[1:] < 1)).all()
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()  # signal only decreases
    assert math.isinf(s.snr[0].item()) and (s.log_snr[1:].diff() < 0).all()


def test_linear_betas_closed_form():
    b = S.linear_betas(1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    assert b[499].item() == pytest.approx(1e-4 + 499 * (0.02 - 1e-4) / 999)
    # ᾱ_T = ∏(1 − β_t) ≈ exp(−Σβ_t) = exp(−T·(β_1 + β_T)/2) for small β
    abar_T = NoiseSchedule(b).alphas_cumprod[-1].item()
    assert abar_T == pytest.approx(4.04e-5, rel=0.01)
    assert abs(math.log(abar_T) + 1000 * (1e-4 + 0.02) / 2) < 0.2


def test_cosine_matches_eq17_and_clips():
    T, s = 1000, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    sched = NoiseSchedule.make("cosine", T)
    for t in (1, 250, 500, 900):  # away from T the clip is inactive
        assert sched.alphas_cumprod[t].item() == pytest.approx(f(t) / f(0), rel=1e-10)
    assert sched.betas[T].item() == pytest.approx(0.999)  # the clip is active at t = T
    unclipped = S.cosine_betas(T, max_beta=1.0)
    assert unclipped[-1].item() == pytest.approx(1.0)
    # before the clip, the product of the alphas is the closed form at every t < T
    assert torch.allclose(S.alphas_cumprod_from_betas(unclipped)[:T], S.cosine_alphas_cumprod(T)[:T], rtol=1e-10)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        NoiseSchedule(unclipped)


def test_sigmoid_is_symmetric_around_half():
    s = NoiseSchedule.make("sigmoid", 1000)  # start = −end: ᾱ = 1/2 at t = T/2
    assert s.alphas_cumprod[500].item() == pytest.approx(0.5, abs=1e-9)
    assert s.log_snr[500].item() == pytest.approx(0.0, abs=1e-8)


def test_alphas_cumprod_from_betas():
    betas = torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64)
    out = S.alphas_cumprod_from_betas(betas)
    assert torch.allclose(out, torch.tensor([1.0, 0.9, 0.72, 0.36], dtype=torch.float64))
    assert S.alphas_cumprod_from_betas(betas.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="1-D float"):
        S.alphas_cumprod_from_betas(torch.ones(2, 2))


def test_snr_and_log_snr():
    abar = torch.tensor([0.5, 0.8, 1e-6], dtype=torch.float64)
    assert torch.allclose(S.snr(abar), torch.tensor([1.0, 4.0, 1e-6 / (1 - 1e-6)], dtype=torch.float64))
    assert torch.allclose(S.log_snr(abar), torch.log(S.snr(abar)))


def test_diffusers_indexing_is_shifted_by_one():
    # diffusers: alphas_cumprod = cumprod(1 − betas) of length T, 0-based.
    betas = S.linear_betas(50)
    diffusers_like = torch.cumprod(1 - betas, 0)
    assert torch.allclose(NoiseSchedule(betas).alphas_cumprod[1:], diffusers_like)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: S.linear_betas(0), "T must be a positive int"),
        (lambda: S.linear_betas(10.0), "T must be a positive int"),
        (lambda: S.linear_betas(True), "T must be a positive int"),
        (lambda: S.linear_betas(10, beta_1=0.0), "beta_1"),
        (lambda: S.linear_betas(10, beta_T=1.5), "beta_T"),
        (lambda: S.linear_betas(10, beta_1=0.1, beta_T=0.01), "larger than beta_T"),
        (lambda: S.cosine_betas(10, s=-1), "s must be"),
        (lambda: S.cosine_betas(10, max_beta=0), "max_beta"),
        (lambda: S.sigmoid_betas(10, start=3, end=-3), "start"),
        (lambda: S.sigmoid_betas(10, tau=0), "tau"),
        (lambda: NoiseSchedule.make("quadratic", 10), "unknown schedule"),
        (lambda: NoiseSchedule(torch.tensor([])), "empty"),
        (lambda: NoiseSchedule(torch.tensor([0.1, 0.0])), "strictly between"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_extract_broadcasts_one_t_per_example():
    s = NoiseSchedule.make("linear", 10)
    x = torch.zeros(3, 1, 4, 4)
    out = extract(s.alphas_cumprod, torch.tensor([0, 5, 10]), x)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    assert torch.allclose(out.flatten(), s.alphas_cumprod[[0, 5, 10]].float())
    assert extract(s.betas, 3, x).shape == (3, 1, 1, 1)  # an int t is used for the whole batch
    assert extract(s.betas, torch.tensor([1, 2]), torch.zeros(2, 5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "t, exc, match",
    [
        (torch.tensor([1.0, 2.0, 3.0]), TypeError, "integer timesteps"),
        (torch.tensor([1, 2]), ValueError, "shape"),
        (torch.tensor([[1, 2, 3]]), ValueError, "shape"),
        (torch.tensor([1, 2, 11]), ValueError, "0..T = 0..10"),
        (torch.tensor([-1, 2, 3]), ValueError, "0..T"),
    ],
)
def test_extract_rejects_bad_timesteps(t, exc, match):
    s = NoiseSchedule.make("linear", 10)
    with pytest.raises(exc, match=match):
        extract(s.betas, t, torch.zeros(3, 2))


# -- the lesson 01 checks: the reference scores full marks, common mistakes do not -------------

from minidiff.course.checks import lesson01  # noqa: E402


def _score(check, fn):
    r = check(fn, quiet=True)
    return r.score / r.points, "\n".join(r.messages)


def _tables(betas):
    s = S.NoiseSchedule(betas)
    return {k: getattr(s, k) for k in ("betas", "alphas", "alphas_cumprod", "snr", "log_snr")}


@pytest.mark.parametrize(
    "check, fn",
    [
        (lesson01.schedule_tables, _tables),
        (lesson01.cosine_betas, S.cosine_betas),
        (lesson01.sigmoid_betas, S.sigmoid_betas),
    ],
)
def test_lesson01_checks_accept_the_reference(check, fn):
    score, messages = _score(check, fn)
    assert score == 1.0, messages


def _cosine_no_clip(T, s=0.008, max_beta=0.999):
    abar = S.cosine_alphas_cumprod(T, s)
    return 1 - abar[1:] / abar[:-1]


def _tables_with(**changes):
    """The reference tables with some entries replaced by a common mistake."""
    def fn(betas):
        d = _tables(betas)
        d.update({k: f(betas, d) for k, f in changes.items()})
        return d
    return fn


def _no_beta_0(betas):
    a = torch.cumprod(1 - betas, 0)
    return {"betas": betas, "alphas": 1 - betas, "alphas_cumprod": a, "snr": a / (1 - a), "log_snr": torch.log(a / (1 - a))}


@pytest.mark.parametrize(
    "check, wrong, hint",
    [
        (lesson01.schedule_tables, _no_beta_0, "prepend β_0 = 0"),
        (lesson01.schedule_tables,
         _tables_with(alphas_cumprod=lambda b, d: torch.cat([torch.ones(1, dtype=b.dtype), 1 - torch.cumsum(b, 0)])), "cumsum"),
        (lesson01.schedule_tables, _tables_with(snr=lambda b, d: 1 / d["snr"]), "inverted"),
        (lesson01.schedule_tables, _tables_with(log_snr=lambda b, d: d["snr"]), "returned the SNR itself"),
        (lesson01.schedule_tables, _tables_with(log_snr=lambda b, d: torch.log10(d["snr"])), "natural log"),
        (lesson01.cosine_betas, _cosine_no_clip, "forgot the clip"),
        (lesson01.sigmoid_betas, lambda T, start=-3.0, end=3.0, tau=1.0, max_beta=0.999:
            S.sigmoid_betas(T, start, end, 1.0, max_beta), "left τ out"),
        (lesson01.sigmoid_betas, lambda T, start=-3.0, end=3.0, tau=1.0, max_beta=0.999:
            S.sigmoid_betas(T, start, end, tau, 1.0), "forgot the clip"),
    ],
)
def test_lesson01_checks_catch_common_mistakes(check, wrong, hint):
    score, messages = _score(check, wrong)
    assert score < 1.0
    assert hint in messages


def test_lesson01_check_of_an_unsolved_stub_scores_zero():
    def stub(*args):
        raise NotImplementedError

    r = lesson01.schedule_tables(stub, quiet=True)
    assert r.status == "not attempted" and r.score == 0
