"""minidiff.data.molecules and minidiff.eval.molecules: parsing, the cached data set, bonds, W1, validity."""

import math

import pytest
import torch

from minidiff.data import molecules
from minidiff.eval.molecules import COVALENT_RADII, bond_angles, bond_lengths, perceive_bonds, valid, wasserstein1

torch.set_num_threads(1)


def test_bad_smiles_is_named():
    with pytest.raises(ValueError, match="C1CC"):
        molecules.parse_smiles("C1CC")
    with pytest.raises(ValueError, match="Cl"):
        molecules.parse_smiles("CCCl")
    with pytest.raises(ValueError, match="N_MAX"):
        molecules.parse_smiles("CCCCCCCCCC")
    with pytest.raises(ValueError, match="xyz"):
        molecules.conformer_dataset(2, smiles=("CCO", "xyz("), cache=False)


def test_radii_are_rdkits():
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    assert all(abs(table.GetRcovalent(a) - r) < 1e-9 for a, r in COVALENT_RADII.items())


def test_dataset_cache_roundtrip_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDIFF_CACHE_DIR", str(tmp_path))
    smiles = ("CCO", "CC(=O)O", "c1ccccc1")
    d = molecules.conformer_dataset(3, seed=0, smiles=smiles)
    assert d["x"].shape == (9, molecules.N_MAX, 3) and d["bonds"].shape == (9, molecules.N_MAX, molecules.N_MAX, 5)
    m = d["mask"][..., None]
    assert ((d["x"] * m).sum(1).abs() < 1e-5).all() and (d["x"][d["mask"] == 0] == 0).all()
    assert d["mol"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.equal(d["bonds"], d["bonds"].transpose(1, 2))
    files = list(tmp_path.glob("molecules_*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp*"))
    again = molecules.conformer_dataset(3, seed=0, smiles=smiles)
    assert all(torch.equal(d[k], again[k]) for k in d)
    stored = torch.load(files[0], weights_only=True)
    stored["data"]["x"][0, 0, 0] += 1.0
    torch.save(stored, files[0])
    with pytest.raises(ValueError, match="sha256"):
        molecules.conformer_dataset(3, seed=0, smiles=smiles)
    files[0].write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="delete"):
        molecules.conformer_dataset(3, seed=0, smiles=smiles)


def test_rdkit_conformers_are_valid_and_broken_ones_are_not():
    d = molecules.conformer_dataset(4, seed=1, smiles=("CCOC(C)=O", "Oc1ccccc1"), cache=False)
    assert valid(d["x"], d["h"], d["bonds"], d["mask"]).all()
    squashed = d["x"] * 0.6  # bonded and 1-3 neighbours merge: extra bonds
    assert not valid(squashed, d["h"], d["bonds"], d["mask"]).any()
    stretched = d["x"] * 1.6  # bonds break
    assert not valid(stretched, d["h"], d["bonds"], d["mask"]).any()
    p = perceive_bonds(d["x"], d["h"], d["mask"])
    assert torch.equal(p, p.transpose(1, 2)) and not p.diagonal(dim1=1, dim2=2).any()


def test_conformers_differ():
    x = molecules.embed_conformers("CCCCC", 6, seed=0)
    d = torch.cdist(x, x)
    assert d.std(0).max() > 0.1  # torsions vary: some distances change between conformers
    for seed in (0, 1):
        assert torch.equal(molecules.embed_conformers("CCO", 3, seed=seed), molecules.embed_conformers("CCO", 3, seed=seed))


def test_bond_lengths_by_type():
    d = molecules.conformer_dataset(2, seed=0, smiles=("CC(=O)O", "c1ccccc1"), cache=False)
    b = bond_lengths(d["x"], d["h"], d["bonds"], d["mask"])
    assert set(b) == {"C-C single", "C-O double", "C-O single", "C-C aromatic"}
    assert len(b["C-C aromatic"]) == 12 and len(b["C-O double"]) == 2
    assert 1.15 < float(b["C-O double"].mean()) < 1.3 < float(b["C-O single"].mean()) < 1.45
    assert 1.35 < float(b["C-C aromatic"].mean()) < 1.42


def test_bond_angles_closed_forms():
    # a carbon at the origin bonded to an O on +x and to C, N along two tetrahedral directions; one more atom of padding
    tet = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1]], dtype=torch.float64) / 3**0.5
    x = torch.zeros(1, 5, 3, dtype=torch.float64)
    x[0, 1] = torch.tensor([1.4, 0.0, 0.0])
    x[0, 2], x[0, 3] = 1.5 * tet[0], 1.5 * tet[1]
    x[0, :4] -= x[0, :4].mean(0)  # centred, as check_cloud expects
    h = torch.nn.functional.one_hot(torch.tensor([[0, 2, 0, 1, 0]]), 3).double()
    bonds = torch.zeros(1, 5, 5, 5)
    bonds[..., 0] = 1
    for i in (1, 2, 3):
        bonds[0, 0, i], bonds[0, i, 0] = torch.eye(5)[1], torch.eye(5)[1]
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    angles = bond_angles(x, h, bonds, mask)
    assert set(angles) == {"C-C-N", "C-C-O", "N-C-O"}  # three bonds at the centre: three angles; keys sorted
    assert abs(float(angles["C-C-N"]) - math.degrees(math.acos(-1 / 3))) < 1e-9  # the tetrahedral 109.47°
    assert abs(float(angles["C-C-O"]) - math.degrees(math.acos(1 / 3**0.5))) < 1e-9  # (1, 1, 1) against x: 54.74°
    # a rotation and a shift change no angle
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    moved = x @ q.T
    moved[0, :4] -= moved[0, :4].mean(0)
    again = bond_angles(moved, h, bonds, mask)
    assert all(torch.allclose(again[k], angles[k]) for k in angles)


def test_bond_angles_of_rdkit_conformers():
    d = molecules.conformer_dataset(2, seed=0, smiles=("c1ccccc1", "CCO"), cache=False)
    a = bond_angles(d["x"], d["h"], d["bonds"], d["mask"])
    assert set(a) == {"C-C-C", "C-C-O"} and len(a["C-C-C"]) == 12 and len(a["C-C-O"]) == 2
    assert 119 < float(a["C-C-C"].mean()) < 121  # the benzene ring's 120°
    assert 105 < float(a["C-C-O"].mean()) < 114  # ethanol: about tetrahedral


def test_wasserstein1_closed_forms():
    a = torch.randn(100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(wasserstein1(a, a + 0.3) - 0.3) < 1e-12
    assert abs(wasserstein1(torch.tensor([0.0]), torch.tensor([1.0, 3.0])) - 2.0) < 1e-12
    b = torch.randn(100, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs(wasserstein1(a, b) - float((a.sort().values - b.sort().values).abs().mean())) < 1e-12
    assert abs(wasserstein1(a, b) - wasserstein1(b, a)) < 1e-12
    # different sizes: a sample repeated twice is the same distribution
    assert wasserstein1(a, torch.cat([a, a])) < 1e-12
    with pytest.raises(ValueError, match="non-empty"):
        wasserstein1(torch.tensor([]), a)
