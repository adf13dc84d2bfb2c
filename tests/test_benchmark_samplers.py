"""benchmarks/samplers.py: the stochastic DPM-Solver++(2M) is tuned on the selection seeds only, every budget
takes the choice of its nearest tuned budget, the selection grid stays out of the main table, and the choice
stored in samplers.json (which lesson 10 reads) is the one its rows give."""

import json
from pathlib import Path

from helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def row(bs, nfe, eta, rho, smax, fid, offset):
    return dict(sampler=bs.sde_label(nfe, eta, rho, smax, select=offset > 0), method="dpmpp_2m_sde", nfe=nfe,
                eta=eta, rho=rho, sigma_max=smax, seed_offset=offset, fid=fid, ratio=fid / 5, seconds=1.0, n=1000)


def test_choice_uses_the_selection_seeds_only():
    bs = load_benchmark("samplers")
    off = bs.SELECT_OFFSET
    rows = [row(bs, 10, 1.0, 4.0, 20.0, 13.5, off), row(bs, 10, 0.5, 7.0, 80.0, 15.0, off),
            row(bs, 10, 0.0, 7.0, 80.0, 9.0, 0),  # lower, but on the table's seeds: must not be chosen
            row(bs, 20, 0.75, 7.0, 20.0, 12.9, off), row(bs, 20, 1.0, 4.0, 20.0, 13.3, off)]
    assert bs.sde_choices(rows) == {10: dict(eta=1.0, rho=4.0, sigma_max=20.0),
                                    20: dict(eta=0.75, rho=7.0, sigma_max=20.0)}
    assert bs.sde_choices(rows[2:3]) == {}


def test_nearest_budget_in_log_nfe():
    bs = load_benchmark("samplers")
    assert [bs.nearest_budget(n) for n in (5, 10, 14, 15, 20, 50, 100)] == [10, 10, 10, 20, 20, 20, 20]


def test_grid_section_marks_the_best_and_names_missing_cells():
    bs = load_benchmark("samplers")
    off = bs.SELECT_OFFSET
    rows = [row(bs, 10, 1.0, 4.0, 20.0, 13.5, off), row(bs, 10, 0.5, 4.0, 20.0, 15.6, off),
            row(bs, 10, 1.0, 7.0, 80.0, 20.3, off), row(bs, 10, 1.0, 4.0, 20.0, 13.2, 0)]
    md = "\n".join(bs.sde_section(rows))
    assert "| 1 | **13.50** | 20.30 |" in md
    assert "| 0.5 | 15.60 | – |" in md
    assert "13.20" not in md  # the table-seed row is not part of the selection grid
    assert bs.sde_section([rows[-1]]) == []


def test_stored_choice_matches_the_stored_rows():
    bs = load_benchmark("samplers")
    data = json.loads((ROOT / "benchmarks" / "samplers.json").read_text())
    stored = {int(k): v for k, v in data["sde_choice"].items()}
    assert stored == bs.sde_choices(data["rows"]) and set(stored) == set(bs.SDE_BUDGETS)
    series = {r["nfe"]: r for r in data["rows"] if r.get("series") == "dpmpp_2m_sde"}
    for nfe, r in series.items():  # each reported row ran the choice of its nearest budget, on the table's seeds
        c = stored[bs.nearest_budget(nfe)]
        assert (r["eta"], r["rho"], r["sigma_max"], r["seed_offset"]) == (c["eta"], c["rho"], c["sigma_max"], 0)
