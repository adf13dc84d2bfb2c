"""Diffusion on molecules: zero-centre-of-mass noise and an E(n)-equivariant denoiser (lesson 16).

A conformer is a point cloud x ∈ R^{n×3} (one point per atom) with fixed features h (the atom
types) and a fixed bond graph. Rotating, reflecting or translating x, or renumbering the atoms,
gives the same molecule, so the model should not care:

  * translations: we diffuse in the subspace Σ_i x_i = 0. The data are centred, and the noise
    is projected onto that subspace, ε ← ε − mean_i ε_i (Hoogeboom et al. 2022), so x_t
    stays centred for every t, and so does every sample;
  * rotations, reflections, permutations: the denoiser is an EGNN (Satorras et al. 2021), whose
    output ε_θ(Q x_t + b, t)[π] = Q ε_θ(x_t, t) for any orthogonal Q, shift b and permutation π.

One EGNN layer (the E(n)-equivariant graph convolutional layer, EGCL, of Satorras et al. 2021), on a
fully connected molecule, with a_ij the bond type of the pair:

    m_ij     = φ_e(h_i, h_j, ‖x_i − x_j‖², a_ij)                             edge message (invariant; eq. 3)
    x_i     ← x_i + 1/(n − 1) · Σ_{j≠i} (x_i − x_j) / (‖x_i − x_j‖ + 1) · φ_x(m_ij)   (equivariant; eq. 4)
    h_i     ← h_i + φ_h(h_i, Σ_{j≠i} m_ij)                                   (invariant; eqs. 5 and 6)

(equation numbers of Satorras et al. 2021. Their eq. 4 is x_i + C Σ_{j≠i} (x_i − x_j) φ_x(m_ij);
here C = 1/(n − 1) averages over the neighbours, and
the division by ‖x_i − x_j‖ + 1 keeps each term bounded for distant atoms: both keep equivariance).
Messages, distances and the sums see only real atoms:
`mask` (B, N) is 1 for an atom and 0 for padding. The network's ε is x_L − x_t, minus its mean.

The training loss is DDPM's L_simple (eq. 14) with the projected noise, averaged over the real
atoms' coordinates; sampling is `sampling.simulate` over `ddpm_step` with projected noise z, or
over deterministic DDIM jumps (a mix of centred x_t and centred ε stays centred).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .ddim import ddim_step, ddim_timesteps
from .forward import add_noise
from .losses import sample_timesteps
from .sampling import ddpm_step, simulate
from .utils import check_float, check_schedule, randn


def check_cloud(x: torch.Tensor, mask: torch.Tensor) -> None:
    """x must be (B, N, D) float and mask (B, N) with the same B and N."""
    check_float("x", x)
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, N, D) (molecules, atoms, coordinates), got {tuple(x.shape)}")
    if not isinstance(mask, torch.Tensor) or mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be a tensor of shape (B, N) = {tuple(x.shape[:2])}, "
                         f"got {tuple(getattr(mask, 'shape', ())) or type(mask).__name__}")


def remove_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Project x (B, N, D) onto the zero-centre-of-mass subspace of each molecule:
    x_i − (1/n) Σ_{real j} x_j on the real atoms, 0 on padding."""
    check_cloud(x, mask)
    m = mask.to(x.dtype)[..., None]
    n = m.sum(1, keepdim=True).clamp(min=1)
    return (x - (x * m).sum(1, keepdim=True) / n) * m


def com_free_noise(shape, mask: torch.Tensor, generator: torch.Generator | None = None,
                   dtype=torch.float32) -> torch.Tensor:
    """ε ~ N(0, I) projected onto the zero-CoM subspace (Hoogeboom et al. 2022): (B, N, D), 0 on padding."""
    return remove_mean(randn(tuple(shape), generator, mask.device, dtype), mask)


class EGCL(nn.Module):
    """One E(n)-equivariant graph convolutional layer (Satorras et al. 2021); see the module docstring.

    hidden:   width of h and of the messages m_ij
    edge_dim: length of the bond features a_ij
    """

    def __init__(self, hidden: int, edge_dim: int):
        super().__init__()
        self.phi_e = nn.Sequential(nn.Linear(2 * hidden + 1 + edge_dim, hidden), nn.SiLU(),
                                   nn.Linear(hidden, hidden), nn.SiLU())
        self.phi_x = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.phi_h = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=0.001)  # small first coordinate steps
        nn.init.zeros_(self.phi_x[-1].bias)

    def forward(self, h: torch.Tensor, x: torch.Tensor, a: torch.Tensor, mask: torch.Tensor):
        """h (B, N, hidden), x (B, N, D), a (B, N, N, edge_dim), mask (B, N) → (h', x')."""
        return egcl_update(self, h, x, a, mask)


def egcl_update(layer: EGCL, h: torch.Tensor, x: torch.Tensor, a: torch.Tensor, mask: torch.Tensor):
    """The EGCL's update with the MLPs of `layer` (phi_e, phi_x, phi_h): returns (h', x').
    h (B, N, hidden), x (B, N, D) for any D, a (B, N, N, edge_dim), mask (B, N) (1 = atom, 0 = padding)."""
    B, N, _ = h.shape
    m = mask.to(x.dtype)
    pair = m[:, :, None] * m[:, None, :] * (1 - torch.eye(N, dtype=x.dtype, device=x.device))  # j ≠ i, both real
    diff = x[:, :, None, :] - x[:, None, :, :]  # (B, N, N, D): x_i − x_j
    d2 = diff.pow(2).sum(-1, keepdim=True)  # ‖x_i − x_j‖²
    hi, hj = h[:, :, None, :].expand(B, N, N, -1), h[:, None, :, :].expand(B, N, N, -1)
    msg = layer.phi_e(torch.cat([hi, hj, d2, a], -1)) * pair[..., None]  # 1. m_ij
    dist = torch.where(pair[..., None] > 0, d2, torch.ones_like(d2)).sqrt()  # (no sqrt of 0: its gradient is ∞)
    n = m.sum(1).clamp(min=2)[:, None, None]
    x = x + (diff / (dist + 1) * layer.phi_x(msg) * pair[..., None]).sum(2) / (n - 1)  # 2. x_i += C Σ_j (x_i − x_j) φ_x
    h = (h + layer.phi_h(torch.cat([h, msg.sum(2)], -1))) * m[..., None]  # 3. h_i ← h_i + φ_h(h_i, Σ_j m_ij)
    return h, x


class EGNN(nn.Module):
    """ε_θ(x_t, t; h, bonds, mask) for zero-CoM coordinates: an embedding of [h, t/T], `layers` EGCLs,
    and ε = remove_mean(x_L − x_t).

    atom_types: length of h's one-hot;  edge_dim: length of the bond features;  T: the schedule's length.
    forward(x_t (B, N, 3), t (B,), h (B, N, atom_types), bonds (B, N, N, edge_dim), mask (B, N)) → (B, N, 3)
    """

    def __init__(self, atom_types: int = 3, edge_dim: int = 5, hidden: int = 64, layers: int = 4, T: int = 1000):
        super().__init__()
        self.config = dict(atom_types=atom_types, edge_dim=edge_dim, hidden=hidden, layers=layers, T=T)
        self.atom_types, self.edge_dim, self.T = atom_types, edge_dim, T
        self.embed = nn.Linear(atom_types + 1, hidden)
        self.layers = nn.ModuleList([EGCL(hidden, edge_dim) for _ in range(layers)])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, h: torch.Tensor, bonds: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        check_cloud(x_t, mask)
        B, N, _ = x_t.shape
        if h.shape != (B, N, self.atom_types):
            raise ValueError(f"h must have shape (B, N, atom_types) = {(B, N, self.atom_types)}, got {tuple(h.shape)}")
        if bonds.shape != (B, N, N, self.edge_dim):
            raise ValueError(f"bonds must have shape (B, N, N, edge_dim) = {(B, N, N, self.edge_dim)}, "
                             f"got {tuple(bonds.shape)}")
        if not isinstance(t, torch.Tensor) or t.shape != (B,):
            raise ValueError(f"t must be a tensor of shape (B,) = ({B},), got {tuple(getattr(t, 'shape', ()))}")
        m = mask.to(x_t.dtype)[..., None]
        time = (t.to(x_t.dtype) / self.T)[:, None, None].expand(B, N, 1)
        feat = self.embed(torch.cat([h.to(x_t.dtype), time], -1)) * m
        x = x_t
        for layer in self.layers:
            feat, x = layer(feat, x, bonds.to(x_t.dtype), mask)
        return remove_mean(x - x_t, mask)


def com_free_loss(schedule, model, batch, generator: torch.Generator | None = None) -> torch.Tensor:
    """L_simple (DDPM eq. 14) on zero-CoM coordinates; `partial(com_free_loss, schedule)` is a loss
    for `training.train` with batches (x0, h, bonds, mask):

    1. t ~ U{1..T};  2. ε ~ N(0, I) projected to Σ_i ε_i = 0;  3. x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4);
    4. the mean of (ε − ε_θ(x_t, t))² over the real atoms' coordinates.
    """
    check_schedule(schedule)
    x0, h, bonds, mask = batch
    check_cloud(x0, mask)
    t = sample_timesteps(schedule, x0.shape[0], x0.device, generator)  # 1.
    noise = com_free_noise(x0.shape, mask, generator, x0.dtype)  # 2.
    x_t = add_noise(schedule, x0, noise, t)  # 3.
    eps = model(x_t, t, h, bonds, mask)
    m = mask.to(x0.dtype)[..., None]
    return ((eps - noise) ** 2 * m).sum() / (m.sum() * x0.shape[-1])  # 4.


@torch.no_grad()
def sample_conformers(schedule, model, h: torch.Tensor, bonds: torch.Tensor, mask: torch.Tensor,
                      steps: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Conformers (B, N, 3) of the molecules (h, bonds, mask): x_T = projected noise, then
    `simulate` over DDPM steps with projected z (steps = None: all T steps) or `steps` DDIM jumps (η = 0)."""
    s = check_schedule(schedule)
    B, N = mask.shape

    def eps(x, t):
        return model(x, t, h, bonds, mask)

    def ddpm(x, t, t_next):
        tt = torch.full((B,), t, dtype=torch.long, device=x.device)
        z = com_free_noise(x.shape, mask, generator, x.dtype)
        return ddpm_step(s, eps(x, tt), x, tt, noise=z)

    def ddim(x, t, t_next):
        tt = torch.full((B,), t, dtype=torch.long, device=x.device)
        return ddim_step(s, eps(x, tt), x, tt, torch.full_like(tt, t_next))

    x_T = com_free_noise((B, N, 3), mask, generator)
    if steps is None or steps == s.T:
        return simulate(ddpm, x_T, list(range(s.T, -1, -1)))
    return simulate(ddim, x_T, ddim_timesteps(s.T, steps) + [0])
