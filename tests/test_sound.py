"""minidiff.data.sound and minidiff.eval.sound: the clips, Karplus–Strong, the spectral measurements."""

import pytest
import torch

from minidiff.data.sound import LENGTH, SAMPLE_RATE, check_clips, karplus_strong, make_clips
from minidiff.eval.sound import ClipClassifier, class_accuracy, log_spectrogram, spectral_distance, spectral_features, train_clip_classifier

torch.set_num_threads(1)


def test_make_clips_shapes_range_and_determinism():
    x, y = make_clips(4, seed=3)
    assert x.shape == (12, 1, LENGTH) and x.dtype == torch.float32
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    peaks = x.abs().amax((1, 2))
    assert (peaks >= 0.5 - 1e-6).all() and (peaks <= 0.95 + 1e-6).all()
    assert torch.equal(x, make_clips(4, seed=3)[0])
    assert not torch.equal(x, make_clips(4, seed=4)[0])


def test_karplus_strong_recurrence_and_pitch():
    f0, d = torch.tensor([200.0, 440.0]), torch.tensor([0.99, 0.95])
    y = karplus_strong(f0, d, 2000, 8000, torch.Generator().manual_seed(0))
    for b, p in enumerate(torch.round(8000 / f0).long().tolist()):
        n = torch.arange(p + 1, 2000)
        assert torch.allclose(y[b, n], d[b].double() * 0.5 * (y[b, n - p] + y[b, n - p - 1]))
    # the pitch: the loop's period is P + ½ samples (the two-tap average delays by half a sample)
    y = karplus_strong(torch.tensor([250.0]), torch.tensor([0.999]), 8192, 8000, torch.Generator().manual_seed(1))
    spec = torch.fft.rfft(y[0] * torch.hann_window(8192, dtype=torch.float64), n=65536).abs()
    hz = torch.fft.rfftfreq(65536, 1 / 8000)
    near = (hz > 200) & (hz < 300)
    assert abs(float(hz[near][spec[near].argmax()]) - 8000 / 32.5) < 0.5


def test_karplus_strong_bad_input():
    with pytest.raises(ValueError, match="shape"):
        karplus_strong(torch.tensor([200.0, 300.0]), torch.tensor([0.9]))
    with pytest.raises(ValueError, match="period"):
        karplus_strong(torch.tensor([10000.0]), torch.tensor([0.9]))


def test_check_clips_names_the_problem():
    x = torch.zeros(2, 1, LENGTH)
    assert check_clips("x", x) is x
    with pytest.raises(ValueError, match="8000 Hz"):
        check_clips("x", x, sample_rate=16000)
    with pytest.raises(ValueError, match="4096 samples"):
        check_clips("x", torch.zeros(2, 1, 2048))
    with pytest.raises(ValueError, match="mono"):
        check_clips("x", torch.zeros(2, LENGTH))
    with pytest.raises(TypeError):
        check_clips("x", torch.zeros(2, 1, LENGTH, dtype=torch.long))
    with pytest.raises(ValueError, match="Hz"):
        log_spectrogram(x, sample_rate=44100)


def test_log_spectrogram_finds_a_sine():
    tau = torch.arange(LENGTH) / SAMPLE_RATE
    x = (0.5 * torch.sin(2 * torch.pi * 1000 * tau))[None, None]
    s = log_spectrogram(x)
    assert s.shape == (1, 129, LENGTH // 64 + 1)
    assert int(s[0, :, 10:-10].mean(1).argmax()) == 1000 * 256 // SAMPLE_RATE  # bin 32


def test_spectral_distance_zero_for_same_set_and_larger_for_other_classes():
    x, y = make_clips(30, seed=5)
    assert spectral_features(x).shape == (90, 48)
    assert spectral_distance(x, x) < 1e-6
    other, _ = make_clips(30, seed=6)
    plucks = x[y == 0]
    assert spectral_distance(x, other) < spectral_distance(torch.cat([plucks] * 3), other)


def test_classifier_learns_the_classes():
    x, y = make_clips(40, seed=7)
    clf = train_clip_classifier(x, y, steps=60, seed=0)
    assert isinstance(clf, ClipClassifier)
    xt, yt = make_clips(20, seed=8)
    assert class_accuracy(clf, xt, yt) > 0.9
