"""Measuring generated conformers (lesson 16): bond lengths, their Wasserstein-1 distance, validity.

    bond_lengths     the length of every bond of the graph, grouped by bond type ("C-C single", ...)
    bond_angles      the angle between every two bonds that share an atom, grouped by the three atom
                     types ("C-C-O": the centre atom in the middle), in degrees
    wasserstein1     W1 between two 1D samples: ∫ |F_a(u) − F_b(u)| du, the area between their CDFs
                     (for two samples of the same size: the mean |difference| of the sorted samples)
    perceive_bonds   bonds read off the coordinates by a distance rule: atoms i ≠ j are bonded when
                     ‖x_i − x_j‖ ≤ r_i + r_j + 0.4 Å, r the covalent radii (Cordero et al. 2008,
                     RDKit's table: C 0.76, N 0.71, O 0.66 Å)
    valid            a conformer is valid when the perceived bonds are exactly the molecule's graph
"""

from __future__ import annotations

import math

import torch

from ..data.molecules import ATOM_TYPES, BOND_TYPES
from ..egnn import check_cloud

COVALENT_RADII = {"C": 0.76, "N": 0.71, "O": 0.66}
TOLERANCE = 0.4


def wasserstein1(a: torch.Tensor, b: torch.Tensor) -> float:
    """W1 distance between the empirical distributions of two 1D samples (any sizes): the area between
    their CDFs, ∫ |F_a(u) − F_b(u)| du, evaluated exactly on the merged sorted sample."""
    for name, v in (("a", a), ("b", b)):
        if not isinstance(v, torch.Tensor) or v.dim() != 1 or v.numel() == 0:
            raise ValueError(f"{name} must be a non-empty 1D tensor of samples, got {tuple(getattr(v, 'shape', ()))}")
    a, b = a.double().sort().values, b.double().sort().values
    u = torch.cat([a, b]).sort().values
    Fa = torch.searchsorted(a, u[:-1], right=True).double() / a.numel()
    Fb = torch.searchsorted(b, u[:-1], right=True).double() / b.numel()
    return float(((Fa - Fb).abs() * u.diff()).sum())


def _types(h: torch.Tensor) -> torch.Tensor:
    return h.argmax(-1)


def bond_lengths(x: torch.Tensor, h: torch.Tensor, bonds: torch.Tensor, mask: torch.Tensor) -> dict:
    """{"C-O single": lengths (float64 tensor), ...}: every bond (i < j) of every conformer, in Å."""
    check_cloud(x, mask)
    d = torch.cdist(x.double(), x.double())
    kind = bonds.argmax(-1)
    types = _types(h)
    i, j = torch.triu_indices(x.shape[1], x.shape[1], 1)
    out: dict[str, list] = {}
    for b in range(x.shape[0]):
        for ii, jj in zip(i.tolist(), j.tolist()):
            k = int(kind[b, ii, jj])
            if k == 0 or mask[b, ii] == 0 or mask[b, jj] == 0:
                continue
            pair = "-".join(sorted((ATOM_TYPES[types[b, ii]], ATOM_TYPES[types[b, jj]])))
            out.setdefault(f"{pair} {BOND_TYPES[k].lower()}", []).append(float(d[b, ii, jj]))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in sorted(out.items())}


def bond_angles(x: torch.Tensor, h: torch.Tensor, bonds: torch.Tensor, mask: torch.Tensor) -> dict:
    """{"C-C-O": angles (float64 tensor, degrees), ...}: for every atom j and every two of its bonded neighbours
    i < k, the angle ∠ijk = arccos(u·v / (‖u‖ ‖v‖)) with u = x_i − x_j, v = x_k − x_j. The key names the outer
    atoms' types in sorted order around the centre's."""
    check_cloud(x, mask)
    graph = (bonds.argmax(-1) > 0) & (mask[:, :, None] > 0) & (mask[:, None, :] > 0)
    types = _types(h)
    out: dict[str, list] = {}
    for b in range(x.shape[0]):
        for j in range(x.shape[1]):
            neighbours = torch.nonzero(graph[b, j]).flatten().tolist()
            for n_i, i in enumerate(neighbours):
                for k in neighbours[n_i + 1:]:
                    u, v = x[b, i].double() - x[b, j].double(), x[b, k].double() - x[b, j].double()
                    cos = float((u @ v) / (u.norm() * v.norm()))
                    ends = sorted((ATOM_TYPES[types[b, i]], ATOM_TYPES[types[b, k]]))
                    key = f"{ends[0]}-{ATOM_TYPES[types[b, j]]}-{ends[1]}"
                    out.setdefault(key, []).append(math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in sorted(out.items())}


def perceive_bonds(x: torch.Tensor, h: torch.Tensor, mask: torch.Tensor, tolerance: float = TOLERANCE) -> torch.Tensor:
    """(B, N, N) bool: ‖x_i − x_j‖ ≤ r_i + r_j + tolerance for real atoms i ≠ j."""
    check_cloud(x, mask)
    r = torch.tensor([COVALENT_RADII[a] for a in ATOM_TYPES], dtype=torch.float64)[_types(h)]
    d = torch.cdist(x.double(), x.double())
    real = (mask[:, :, None] > 0) & (mask[:, None, :] > 0)
    eye = torch.eye(x.shape[1], dtype=torch.bool)
    return (d <= r[:, :, None] + r[:, None, :] + tolerance) & real & ~eye


def valid(x: torch.Tensor, h: torch.Tensor, bonds: torch.Tensor, mask: torch.Tensor,
          tolerance: float = TOLERANCE) -> torch.Tensor:
    """(B,) bool: the bonds perceived from x are exactly the molecule's bond graph."""
    graph = bonds.argmax(-1) > 0
    real = (mask[:, :, None] > 0) & (mask[:, None, :] > 0)
    return ((perceive_bonds(x, h, mask, tolerance) == (graph & real)) | ~real).all(2).all(1)
