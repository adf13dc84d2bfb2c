"""Lesson 19's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson15.py."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import superres
from minidiff.course.checks import lesson19
from minidiff.eval import memorisation
from minidiff.eval.memorisation import nearest_neighbours
from minidiff.utils import randint
from minidiff.vpred import v_loss

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson19.degrade, (superres.degrade,)),
    (lesson19.sr_loss, (superres.sr_loss,)),
    (lesson19.memorisation_share, (memorisation.memorisation_share,)),
]


# ---------------------------------------------------------------- 1. degrade
def _degrade(x0, low_size, pool="avg", mode="bicubic", clamp=True, align=False, check=True):
    if check and low_size not in (7, 14):
        raise ValueError("low_size must be 7 or 14")
    k = 28 // low_size
    if pool == "avg":
        x_lr = F.avg_pool2d(x0, k)
    elif pool == "max":
        x_lr = F.max_pool2d(x0, k)
    else:
        x_lr = x0[:, :, ::k, ::k]
    kw = {} if mode == "nearest" else {"align_corners": align}
    c = F.interpolate(x_lr, size=(28, 28), mode=mode, **kw)
    return x_lr, c.clamp(-1, 1) if clamp else c


def dg_subsample(x0, low_size):
    return _degrade(x0, low_size, pool="sub")


def dg_maxpool(x0, low_size):
    return _degrade(x0, low_size, pool="max")


def dg_nearest(x0, low_size):
    return _degrade(x0, low_size, mode="nearest")


def dg_bilinear(x0, low_size):
    return _degrade(x0, low_size, mode="bilinear")


def dg_no_clamp(x0, low_size):
    return _degrade(x0, low_size, clamp=False)


def dg_align(x0, low_size):
    return _degrade(x0, low_size, align=True)


def dg_no_check(x0, low_size):
    return _degrade(x0, low_size, check=False) if 28 % low_size == 0 else _degrade(x0, 14, check=False)


def dg_only_c(x0, low_size):
    return _degrade(x0, low_size)[1]


def dg_float32(x0, low_size):
    x_lr, c = _degrade(x0.float(), low_size)
    return x_lr, c


MUTANTS += [
    ("19 degrade: subsampling", lesson19.degrade, (dg_subsample,), "not one pixel of it", True),
    ("19 degrade: max pooling", lesson19.degrade, (dg_maxpool,), "not its max", True),
    ("19 degrade: nearest", lesson19.degrade, (dg_nearest,), "not 'nearest'", True),
    ("19 degrade: bilinear", lesson19.degrade, (dg_bilinear,), "not 'bilinear'", True),
    ("19 degrade: no clamp", lesson19.degrade, (dg_no_clamp,), "bicubic overshoots", True),
    ("19 degrade: align_corners", lesson19.degrade, (dg_align,), "align_corners=False", True),
    ("19 degrade: no size check", lesson19.degrade, (dg_no_check,), "ValueError", False),
    ("19 degrade: returns c only", lesson19.degrade, (dg_only_c,), "return x_lr, c", True),
    ("19 degrade: float64 to float32", lesson19.degrade, (dg_float32,), "float", False),
]


# ---------------------------------------------------------------- 2. sr_loss
def _sr(schedule, model, x0, generator=None, low_sizes=(7, 14), one_size=False, cond="c", fixed=False, detach=False):
    if x0.shape[-1] != 28:
        raise ValueError("x0 must be 28×28")
    if fixed:
        low_sizes = (7, 14)
    if one_size:
        h = low_sizes[int(randint(len(low_sizes), (1,), generator, x0.device))]
        c = superres.degrade(x0, h)[1]
    else:
        pick = randint(len(low_sizes), (x0.shape[0],), generator, x0.device)
        c = torch.cat([superres.degrade(x0[i:i + 1], low_sizes[int(pick[i])])[1] for i in range(x0.shape[0])])
    c = {"c": c, "zeros": torch.zeros_like(x0), "x0": x0}[cond]
    loss = v_loss(schedule, lambda x_t, t: model(x_t, t, c), x0, generator)
    return loss.detach() if detach else loss


def sr_one_size(schedule, model, x0, generator=None, low_sizes=(7, 14)):
    return _sr(schedule, model, x0, generator, low_sizes, one_size=True)


def sr_zero_cond(schedule, model, x0, generator=None, low_sizes=(7, 14)):
    return _sr(schedule, model, x0, generator, low_sizes, cond="zeros")


def sr_cond_x0(schedule, model, x0, generator=None, low_sizes=(7, 14)):
    return _sr(schedule, model, x0, generator, low_sizes, cond="x0")


def sr_fixed_sizes(schedule, model, x0, generator=None, low_sizes=(7, 14)):
    return _sr(schedule, model, x0, generator, low_sizes, fixed=True)


def sr_detached(schedule, model, x0, generator=None, low_sizes=(7, 14)):
    return _sr(schedule, model, x0, generator, low_sizes, detach=True)


def sr_draw_after(schedule, model, x0, generator=None, low_sizes=(7, 14)):
    """the low sizes drawn after the v-loss's draws: different random numbers"""
    holder = {}

    def call(x_t, t):
        if "c" not in holder:
            pick = randint(len(low_sizes), (x0.shape[0],), generator, x0.device)
            holder["c"] = torch.cat([superres.degrade(x0[i:i + 1], low_sizes[int(pick[i])])[1] for i in range(len(x0))])
        return model(x_t, t, holder["c"])

    return v_loss(schedule, call, x0, generator)


MUTANTS += [
    ("19 sr_loss: one size per batch", lesson19.sr_loss, (sr_one_size,), "not one for the whole batch", True),
    ("19 sr_loss: zero condition", lesson19.sr_loss, (sr_zero_cond,), "not zeros", True),
    ("19 sr_loss: clean x0 as condition", lesson19.sr_loss, (sr_cond_x0,), "never the clean x0", True),
    ("19 sr_loss: low_sizes ignored", lesson19.sr_loss, (sr_fixed_sizes,), "use the low_sizes you are given", True),
    ("19 sr_loss: detached", lesson19.sr_loss, (sr_detached,), "detached", True),
    ("19 sr_loss: sizes drawn after t and ε", lesson19.sr_loss, (sr_draw_after,), "pick = randint", True),
]


# ---------------------------------------------------------------- 3. memorisation_share
def _mem(samples, train, test, how="min", to="train", percent=False, null_n=False):
    d_gen, nearest = nearest_neighbours(samples, train if to == "train" else test)
    d_test, _ = nearest_neighbours(test, train)
    threshold = d_test.median() if how == "median" else d_test.min()
    hit = d_gen <= threshold if how == "le" else d_gen < threshold
    share = float(hit.double().mean()) * (100 if percent else 1)
    null = 1 / len(d_test) if null_n else 1 / (len(d_test) + 1)
    return {"share": share, "threshold": float(threshold), "d_gen": d_gen, "d_test": d_test, "nearest": nearest,
            "null": null}


def mem_median(samples, train, test):
    return _mem(samples, train, test, how="median")


def mem_to_test(samples, train, test):
    return _mem(samples, train, test, to="test")


def mem_percent(samples, train, test):
    return _mem(samples, train, test, percent=True)


def mem_null_n(samples, train, test):
    return _mem(samples, train, test, null_n=True)


def mem_squared(samples, train, test):
    out = _mem(samples, train, test)
    out["d_gen"], out["d_test"] = out["d_gen"] ** 2, out["d_test"] ** 2
    out["threshold"] = float(out["d_test"].min())
    return out


def mem_list(samples, train, test):
    out = _mem(samples, train, test)
    return [out["share"], out["d_gen"]]


MUTANTS += [
    ("19 memorisation: median threshold", lesson19.memorisation_share, (mem_median,), "not the median", True),
    ("19 memorisation: distance to test", lesson19.memorisation_share, (mem_to_test,), "nearest *training* digit", True),
    ("19 memorisation: percentage", lesson19.memorisation_share, (mem_percent,), "share", True),
    ("19 memorisation: null 1/n", lesson19.memorisation_share, (mem_null_n,), "n_test + 1", True),
    ("19 memorisation: squared distances", lesson19.memorisation_share, (mem_squared,), "Euclidean distances", True),
    ("19 memorisation: a list, no dict", lesson19.memorisation_share, (mem_list,), "return {", True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_reference_passes(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_caught(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula)
