"""The one forward step and the one threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from avsbench.engine import step
from avsbench.engine.embeddings import AudioEmbedder, content_digest
from avsbench.models.registry import build_model


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model("avss", "resnet18", decoder_channels=16, num_classes=3).eval()


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(10, 3, 64, 64, generator=g)  # two 5-frame windows
    audio = torch.randn(10, 128, generator=g)
    valid = torch.tensor([1.0] * 7 + [0.0] * 3)
    return frames, audio, valid


def test_forward_equals_a_direct_model_call(tiny_model):
    frames, audio, valid = _inputs()
    with torch.no_grad():
        direct = tiny_model(frames, audio, valid)
        ours = step.forward(tiny_model, frames, audio, valid)
        last = step.forward(tiny_model, frames, audio, valid, channels_last=True)
    assert torch.equal(ours.logits, direct.logits)
    for a, b in zip(ours.visual_maps + ours.audio_maps, direct.visual_maps + direct.audio_maps):
        assert torch.equal(a, b)
    torch.testing.assert_close(last.logits, direct.logits, rtol=1e-4, atol=1e-5)


def test_forward_under_bf16_autocast_returns_float32(tiny_model):
    frames, audio, valid = _inputs()
    with torch.no_grad():
        direct = tiny_model(frames, audio, valid).logits
        half = step.forward(tiny_model, frames, audio, valid, amp="bf16")
    assert half.logits.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in half.visual_maps)
    assert not torch.equal(half.logits, direct)  # it did run in bfloat16 ...
    assert (half.logits - direct).abs().max() < 0.1 * direct.abs().max()  # ... and agrees
    with pytest.raises(ValueError, match="off, bf16, fp16"):
        step.forward(tiny_model, frames, audio, amp="fp8")


def test_model_kwargs_reach_the_model():
    seen = {}

    class Recorder(nn.Module):
        def forward(self, frames, audio_emb, frame_valid=None, **kwargs):
            seen.update(kwargs, valid=frame_valid)
            return frames.mean(1, keepdim=True).half()

    out = step.forward(Recorder(), torch.ones(5, 3, 8, 8), torch.zeros(5, 128), target_frames=3)
    assert seen["target_frames"] == 3 and seen["valid"] is None
    assert out.dtype == torch.float32


class _MeanAudio(nn.Module):
    def forward(self, log_mel):
        return log_mel.mean(dim=(1, 2, 3))[:, None].expand(-1, 128).contiguous()


def test_forward_batch_flattens_clips_and_embeds_the_audio(tiny_model):
    g = torch.Generator().manual_seed(2)
    batch = {
        "frames": torch.randn(2, 5, 3, 64, 64, generator=g),
        "audio": torch.randn(2, 5, 1, 96, 64, generator=g),
        "frame_valid": torch.ones(2, 5),
        "masks": torch.zeros(2, 5, 64, 64),
        "gt_valid": torch.tensor([[1.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0]]),
        "video_id": ["a", "b"],
        "category": ["x", "y"],
    }
    embedder = AudioEmbedder(_MeanAudio(), "cpu", cache="memory")
    with torch.no_grad():
        out = step.forward_batch(
            tiny_model, embedder, batch, torch.device("cpu"), cache_namespace="t"
        )
        audio = batch["audio"].reshape(10, 1, 96, 64).mean(dim=(1, 2, 3))[:, None].expand(-1, 128)
        direct = tiny_model(batch["frames"].reshape(10, 3, 64, 64), audio, torch.ones(10))
    torch.testing.assert_close(out.logits, direct.logits, rtol=0, atol=1e-6)
    # cache keys: <namespace>/<category>/<id>-<hash of the clip's log-mel> (content-keyed)
    digests = [content_digest(batch["audio"][i]) for i in range(2)]
    assert embedder.vggish_runs == 2
    assert sorted(embedder.memory) == [f"t/x/a-{digests[0]}", f"t/y/b-{digests[1]}"]
    masks, gt_valid = step.flat_targets(batch, torch.device("cpu"))
    assert masks.shape == (10, 64, 64) and gt_valid.tolist() == [1, 0, 0, 0, 0] * 2


def test_binary_masks_are_the_published_sigmoid_rule():
    logits = torch.tensor([[-3.0, -1e-9, 0.0], [1e-9, 1e-6, 5.0]])[None, None]  # [1, 1, 2, 3]
    expected = np.array([[[0, 0, 0], [0, 1, 1]]], dtype=np.uint8)  # 1e-9: sigmoid rounds to 0.5
    mask = step.predicted_masks(logits, semantic=False)
    assert mask.dtype == np.uint8 and np.array_equal(mask, expected)


def test_semantic_masks_take_the_largest_logit_lower_id_on_ties():
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, :, 0, 0] = torch.tensor([0.1, 0.9, 0.2])  # class 1
    logits[0, :, 0, 1] = torch.tensor([0.5, 0.5, 0.1])  # tie: class 0
    logits[0, :, 0, 2] = torch.tensor([-1.0, -2.0, -0.5])  # class 2
    logits[0, :, 0, 3] = torch.tensor([0.0, 0.3, 0.3])  # tie: class 1
    assert step.predicted_masks(logits, semantic=True).tolist() == [[[1, 0, 2, 1]]]
    with pytest.raises(ValueError, match="K = 3"):
        step.predicted_masks(logits, semantic=False)


def _bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners False), written from the formula."""
    h, w = image.shape
    out = np.zeros(size)
    for i in range(size[0]):
        for j in range(size[1]):
            y = max((i + 0.5) * h / size[0] - 0.5, 0.0)
            x = max((j + 0.5) * w / size[1] - 0.5, 0.0)
            y0, x0 = min(int(y), h - 1), min(int(x), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            top = image[y0, x0] * (1 - dx) + image[y0, x1] * dx
            bottom = image[y1, x0] * (1 - dx) + image[y1, x1] * dx
            out[i, j] = top * (1 - dy) + bottom * dy
    return out


def test_upsampled_masks_against_a_hand_computation(monkeypatch):
    g = torch.Generator().manual_seed(4)
    binary = torch.randn(2, 1, 3, 4, generator=g)
    got = step.predicted_masks(binary, semantic=False, size=(7, 9))
    for n in range(2):
        up = _bilinear(binary[n, 0].double().numpy(), (7, 9))
        assert np.array_equal(got[n], (up > 0).astype(np.uint8))  # no logit near 0 here
    classes = torch.randn(1, 5, 3, 4, generator=g)
    up = np.stack([_bilinear(classes[0, c].double().numpy(), (6, 10)) for c in range(5)])
    full = step.predicted_masks(classes, semantic=True, size=(6, 10))
    assert np.array_equal(full[0], up.argmax(0))
    monkeypatch.setattr(step, "FULL_UPSAMPLE_ELEMENTS", 10)  # the class-by-class path
    assert np.array_equal(step.predicted_masks(classes, semantic=True, size=(6, 10)), full)
    one = step.predicted_masks(binary, semantic=False, size=(7, 9))  # K = 1 never goes there
    assert np.array_equal(one, got)
