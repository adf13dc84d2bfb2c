"""minidiff.video: folding frames, temporal attention, the space-time U-Net and the video measures."""

import pytest
import torch

from minidiff import video
from minidiff.data import moving
from minidiff.guidance import cfg_loss, guided_sample
from minidiff.schedules import NoiseSchedule
from minidiff.vpred import EpsFromV, v_loss

torch.set_num_threads(1)


def test_fold_unfold_round_trip_and_order():
    x = torch.randn(2, 3, 4, 5, 5)
    f = video.fold_frames(x)
    assert f.shape == (8, 3, 5, 5) and torch.equal(f[1 * 4 + 2], x[1, :, 2])
    assert torch.equal(video.unfold_frames(f, 4), x)
    with pytest.raises(ValueError, match="frames=3"):
        video.unfold_frames(f, 3)
    with pytest.raises(ValueError, match="video"):
        video.fold_frames(torch.randn(2, 3, 4, 5))


def test_temporal_attention_matches_a_loop_and_is_permutation_equivariant():
    q, k, v = (torch.randn(2, 4, 5, 3, 2, dtype=torch.float64) for _ in range(3))
    out = video.temporal_attention(q, k, v, heads=2)
    b, h, w = 1, 2, 1
    for head in range(2):
        c = slice(2 * head, 2 * head + 2)
        Q, K, V = q[b, c, :, h, w].T, k[b, c, :, h, w].T, v[b, c, :, h, w].T  # (F, d)
        want = torch.softmax(Q @ K.T / 2 ** 0.5, -1) @ V
        assert torch.allclose(out[b, c, :, h, w].T, want)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(video.temporal_attention(q[:, :, perm], k[:, :, perm], v[:, :, perm], 2), out[:, :, perm])
    with pytest.raises(ValueError, match="divisible"):
        video.temporal_attention(q, k, v, heads=3)


def test_frame_embedding_breaks_the_symmetry():
    torch.manual_seed(0)
    layer = video.TemporalAttention(8, frames=4, heads=2)
    torch.nn.init.normal_(layer.proj.weight)  # not the identity any more
    x = torch.randn(1, 8, 1, 3, 3).expand(1, 8, 4, 3, 3)  # four identical frames
    out = video.unfold_frames(layer(video.fold_frames(x.contiguous())), 4)
    assert not torch.allclose(out[:, :, 0], out[:, :, 1])  # the frames now differ: each knows its index


def _tiny_model(temporal=True):
    torch.manual_seed(0)
    return video.VideoUNet(1, (8, 16), frames=3, size=8, num_classes=10, heads=2, temporal=temporal, patch=2)


def test_video_unet_shapes_grads_and_errors():
    model = _tiny_model()
    x, t, y = torch.randn(2, 1, 3, 8, 8), torch.tensor([5, 900]), torch.tensor([1, 10])
    out = model(x, t, y)
    assert out.shape == x.shape
    for p in model.parameters():  # the zero-initialised output: start the gradient somewhere
        torch.nn.init.normal_(p, std=0.1) if p.dim() > 1 else None
    loss = cfg_loss(NoiseSchedule.make("cosine", 100), model, (torch.randn(2, 1, 3, 8, 8), torch.tensor([1, 2])),
                    torch.Generator().manual_seed(0), loss=v_loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="frames"):
        model(torch.randn(2, 1, 4, 8, 8), t, y)
    with pytest.raises(ValueError, match="pixels"):
        model(torch.randn(2, 1, 3, 16, 16), t, y)
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(2, 1, 3, 8, 8, dtype=torch.long), t, y)
    with pytest.raises(ValueError, match="divisible"):
        video.VideoUNet(1, (8, 16), frames=3, size=6, patch=2)


def test_frames_interact_only_through_temporal_layers():
    for temporal in (True, False):
        model = _tiny_model(temporal)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.2) if p.dim() > 1 else None
        x, t, y = torch.randn(1, 1, 3, 8, 8), torch.tensor([300]), torch.tensor([4])
        x2 = x.clone()
        x2[:, :, 2] += 1.0  # change the last frame only
        with torch.no_grad():
            changed = (model(x2, t, y) - model(x, t, y))[:, :, 0].abs().max()
        assert (changed > 1e-6) == temporal


def test_guided_sampling_runs_on_videos():
    model = _tiny_model().eval()
    schedule = NoiseSchedule.make("cosine", 100)
    out = guided_sample(schedule, EpsFromV(model, schedule), torch.tensor([1, 2]), 2.0, (1, 3, 8, 8), steps=3,
                        generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 3, 8, 8) and out.abs().max() <= 1 + 1e-5


def test_com_track_and_bounce_fit_of_real_tracks():
    g = torch.Generator().manual_seed(0)
    start, vel = moving.random_motion(12, g)
    tracks = moving.bounce_track(start, vel, 6)
    fit, rms = video.bounce_fit(tracks)
    assert fit.shape == tracks.shape and rms.shape == (12,)
    assert rms.max() < 0.05  # the generator's own tracks are fitted up to the grid spacing
    noisy = tracks + torch.randn(tracks.shape, generator=g)
    assert video.bounce_fit(noisy)[1].mean() > 0.5  # jitter of std 1 px leaves a residual
    videos = -torch.ones(1, 1, 2, 6, 6)
    videos[0, 0, 0, 1, 4] = 1.0
    videos[0, 0, 1, 5, 0] = 1.0
    assert torch.allclose(video.com_track(videos), torch.tensor([[[1.0, 4.0], [5.0, 0.0]]]))
    with pytest.raises(ValueError, match="tracks"):
        video.bounce_fit(torch.zeros(3, 6))


def test_frame_crops_and_scores():
    data = moving.MovingDigits(torch.rand(10, 16, 16), torch.arange(10))
    videos, labels, _ = data.sample(3, torch.Generator().manual_seed(0))
    crops = video.frame_crops(videos)
    assert crops.shape == (3 * moving.FRAMES, 1, 28, 28) and crops.min() >= -1 and crops.max() <= 1
    frame_labels = torch.tensor([[1, 1, 1, 1], [2, 2, 3, 2], [0, 0, 0, 0]])
    s = video.video_scores(frame_labels, torch.tensor([1, 2, 5]))
    assert s["per_frame_accuracy"] == pytest.approx(7 / 12) and s["identity_consistency"] == pytest.approx(2 / 3)
