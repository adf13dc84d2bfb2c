"""Small molecules in 3D: RDKit conformers of a fixed list of SMILES (lesson 16).

Scope: the heavy atoms (C, N, O) of 24 small molecules (2 to 8 heavy atoms), each with many
conformers. RDKit embeds every molecule *with* its hydrogens by ETKDG (Riniker & Landrum 2015;
`AllChem.EmbedMultipleConfs` with a fixed `randomSeed`, 42 + seed), and we keep the heavy atoms'
coordinates (in Å), centred so that their mean is zero (the "centre of mass" with equal weights,
as in Hoogeboom et al. 2022). A molecule of n heavy atoms is padded to N_MAX atoms:

    x      (M, N_MAX, 3)        float32  coordinates, zero on padding rows, Σ_i x_i = 0 over real atoms
    h      (M, N_MAX, 3)        float32  one-hot atom type (C, N, O), zero on padding
    bonds  (M, N_MAX, N_MAX, 5) float32  one-hot bond type of each pair (none, single, double, triple, aromatic)
    mask   (M, N_MAX)           float32  1 for a real atom, 0 for padding
    mol    (M,)                 long     which SMILES the row belongs to

The builder caches the tensors under the cache folder (`minidiff.paths.find_dir("cache")`),
writes the file atomically (a temporary file, then `os.replace`), stores a sha256 of the tensors'
bytes beside them and checks it when it reads the file back.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from ..paths import find_dir
from ..utils import check_positive_int

SMILES = (
    "CCO", "CCCO", "CC(C)O", "CCCC", "CCCCC", "CCOCC", "CC(=O)O", "CCC(=O)O", "CC(C)=O", "CCC(C)=O",
    "NCC(=O)O", "CC(N)C(=O)O", "CCN", "CCCN", "OCCO", "OCCCO", "COC(C)=O", "CCOC(C)=O", "c1ccccc1",
    "Cc1ccccc1", "Oc1ccccc1", "c1ccncc1", "C1CCCCC1", "OCc1ccccc1",
)
ATOM_TYPES = ("C", "N", "O")
BOND_TYPES = ("none", "SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
N_MAX = 8
VERSION = 2  # bump when the construction changes: the cache file's name records it
SEED_OFFSET = 42  # RDKit's ETKDG returned n identical conformers for randomSeed=0 (measured): seeds start at 42


def parse_smiles(smiles: str):
    """The RDKit molecule of a SMILES string; a ValueError naming the string if RDKit cannot parse it
    or if it has atoms other than C, N, O or more than N_MAX heavy atoms."""
    from rdkit import Chem, RDLogger

    if not isinstance(smiles, str) or not smiles:
        raise ValueError(f"a SMILES must be a non-empty string, got {smiles!r}")
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}: check its brackets, ring digits and valences")
    symbols = {a.GetSymbol() for a in mol.GetAtoms()}
    if not symbols <= set(ATOM_TYPES):
        raise ValueError(f"SMILES {smiles!r} has atoms {sorted(symbols - set(ATOM_TYPES))}: this data set knows {ATOM_TYPES}")
    if mol.GetNumAtoms() > N_MAX:
        raise ValueError(f"SMILES {smiles!r} has {mol.GetNumAtoms()} heavy atoms, more than N_MAX = {N_MAX}")
    return mol


def graph(smiles: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(h (N_MAX, 3) one-hot atom types, bonds (N_MAX, N_MAX, 5) one-hot bond types) of one molecule."""
    mol = parse_smiles(smiles)
    h = torch.zeros(N_MAX, len(ATOM_TYPES))
    for a in mol.GetAtoms():
        h[a.GetIdx(), ATOM_TYPES.index(a.GetSymbol())] = 1
    bonds = torch.zeros(N_MAX, N_MAX, len(BOND_TYPES))
    n = mol.GetNumAtoms()
    bonds[:n, :n, 0] = 1
    for b in mol.GetBonds():
        i, j, k = b.GetBeginAtomIdx(), b.GetEndAtomIdx(), BOND_TYPES.index(str(b.GetBondType()))
        bonds[i, j, 0] = bonds[j, i, 0] = 0
        bonds[i, j, k] = bonds[j, i, k] = 1
    return h, bonds


def embed_conformers(smiles: str, n: int, seed: int = 0) -> torch.Tensor:
    """n ETKDG conformers of a molecule (embedded with hydrogens, heavy atoms kept): (n, atoms, 3) float64, Å."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    check_positive_int("n", n)
    mol = Chem.AddHs(parse_smiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = SEED_OFFSET + seed
    params.numThreads = 1
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if len(ids) != n:
        raise RuntimeError(f"ETKDG embedded {len(ids)} of {n} conformers of {smiles!r}")
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    return torch.from_numpy(np.stack([mol.GetConformer(i).GetPositions()[heavy] for i in ids])).double()


def _digest(data: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(data):
        h.update(k.encode())
        h.update(data[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def conformer_dataset(n_per_molecule: int = 200, seed: int = 0, smiles=SMILES, cache: bool = True) -> dict:
    """The padded tensors (x, h, bonds, mask, mol; see the module's docstring) of n_per_molecule
    ETKDG conformers of each SMILES, built once and cached (atomically, verified by sha256 on reading)."""
    check_positive_int("n_per_molecule", n_per_molecule)
    smiles = tuple(smiles)
    for s in smiles:
        parse_smiles(s)  # a bad SMILES fails here, before any work, with its name
    key = hashlib.sha256(repr((VERSION, smiles, n_per_molecule, seed)).encode()).hexdigest()[:16]
    path = find_dir("cache") / f"molecules_{key}.pt"
    if cache and path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            data, digest = stored["data"], stored["sha256"]
        except Exception as err:  # a truncated or foreign file
            raise ValueError(f"{path}: unreadable molecule cache ({err}); delete the file to rebuild it") from None
        if _digest(data) != digest:
            raise ValueError(f"{path}: the cached tensors do not match their sha256 (a damaged file); "
                             "delete it to rebuild it")
        return data
    xs, hs, bs, ms, ids = [], [], [], [], []
    for k, s in enumerate(smiles):
        h, bonds = graph(s)
        xyz = embed_conformers(s, n_per_molecule, seed)
        n = xyz.shape[1]
        x = torch.zeros(n_per_molecule, N_MAX, 3, dtype=torch.float64)
        x[:, :n] = xyz - xyz.mean(1, keepdim=True)  # zero centre of mass (equal weights)
        mask = torch.zeros(N_MAX)
        mask[:n] = 1
        xs.append(x.float())
        hs.append(h.expand(n_per_molecule, -1, -1))
        bs.append(bonds.expand(n_per_molecule, -1, -1, -1))
        ms.append(mask.expand(n_per_molecule, -1))
        ids.append(torch.full((n_per_molecule,), k, dtype=torch.long))
    data = {"x": torch.cat(xs), "h": torch.cat(hs).contiguous(), "bonds": torch.cat(bs).contiguous(),
            "mask": torch.cat(ms).contiguous(), "mol": torch.cat(ids)}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"data": data, "sha256": _digest(data)}, tmp)
        os.replace(tmp, path)
    return data
