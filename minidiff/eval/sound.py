"""Measuring generated sounds (lesson 16): log-spectrograms, a spectral Fréchet distance, a clip classifier.

    log_spectrogram   log(|STFT|² + 1e-3) with a Hann window of n_fft = 256 samples (32 ms), hop 64 (8 ms);
                      1e-3 sits ≈ 66 dB below the peak bin of a full-scale sine (power (Σw/2)² ≈ 4096),
                      so near-silence counts as silence, as in a dB display with a floor
    spectral_features 48 numbers per clip: the time-averaged log spectrum in 32 bands of 125 Hz (0–4 kHz),
                      and the loudness envelope (log mean power, floor 1e-5) in 16 slices of 32 ms
    spectral_distance the Fréchet distance between Gaussians fitted to the features of two sets of clips
                      (minidiff.eval.fid's formula); compare it with the distance between two disjoint
                      sets of real clips, the floor that sampling noise alone gives
    ClipClassifier    a small 1D CNN over the spectrogram's frames, trained on real clips; the share of
                      generated clips it assigns to the class they were asked for is the class accuracy
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.sound import SAMPLE_RATE, check_clips
from ..training import train
from .fid import fid_from_features

N_FFT, HOP = 256, 64
SPEC_FLOOR, ENERGY_FLOOR = 1e-3, 1e-5  # power floors: −66 dB re a full-scale sine's peak bin; −50 dB re power 1


def log_spectrogram(x: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, 1, L) clips → (B, N_FFT/2 + 1, frames) log power spectrogram (torch.stft, Hann window)."""
    check_clips("x", x, sample_rate)
    spec = torch.stft(x[:, 0].float(), N_FFT, HOP, window=torch.hann_window(N_FFT, device=x.device),
                      return_complex=True)
    return torch.log(spec.abs() ** 2 + SPEC_FLOOR)


def spectral_features(x: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(B, 48): the mean log spectrum in 32 bands, and the log energy of 16 time slices."""
    s = log_spectrogram(x, sample_rate)
    bands = s[:, :128].mean(2).reshape(s.shape[0], 32, 4).mean(2)
    energy = torch.log((x[:, 0].float() ** 2).reshape(x.shape[0], 16, -1).mean(2) + ENERGY_FLOOR)
    return torch.cat([bands, energy], 1).double()


def spectral_distance(a: torch.Tensor, b: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> float:
    """Fréchet distance between the spectral features of two sets of clips (0 for identical statistics)."""
    return fid_from_features(spectral_features(a, sample_rate), spectral_features(b, sample_rate))


class ClipClassifier(nn.Module):
    """Class logits of clips: log spectrogram → two 1D convs over time → mean over time → linear."""

    def __init__(self, num_classes: int = 3, width: int = 48):
        super().__init__()
        self.config = dict(num_classes=num_classes, width=width)
        bins = N_FFT // 2 + 1
        self.net = nn.Sequential(nn.Conv1d(bins, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv1d(width, width, 3, stride=2, padding=1), nn.SiLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = log_spectrogram(x)
        s = (s - s.mean((1, 2), keepdim=True)) / 4.0  # loudness-free, roughly unit scale
        return self.head(self.net(s).mean(2))


def _cross_entropy(model, batch, generator=None):
    x, y = batch
    return F.cross_entropy(model(x), y)


def train_clip_classifier(clips: torch.Tensor, labels: torch.Tensor, num_classes: int = 3, steps: int = 300,
                          seed: int = 0) -> ClipClassifier:
    """A ClipClassifier trained with `training.train` (cross-entropy, batch 64); returned in eval mode."""
    check_clips("clips", clips)
    torch.manual_seed(seed)
    model = ClipClassifier(num_classes)
    train(model, partial(_cross_entropy), (clips, labels), steps, batch_size=64, lr=2e-3, seed=seed,
          show_progress=False)
    return model.eval()


@torch.no_grad()
def class_accuracy(classifier: ClipClassifier, clips: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of clips that the classifier puts in the class `labels` says."""
    return float((classifier(clips).argmax(1) == labels).double().mean())
