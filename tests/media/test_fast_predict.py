"""The faster predict (issue 24, item 5) gives what the plain computations give.

- `MaskOverlay`'s tabulated blend equals the per-pixel formula
  round((1 - alpha) v + alpha c) of `visualize.overlay`'s docstring, computed here in
  float32 pixel by pixel, for binary and semantic masks of scattered shapes.
- `predict_video` (decoding, model and overlay on their own threads) gives the masks of
  the model run directly on each window built from independently decoded frames.
"""

from __future__ import annotations

import numpy as np
import pytest

from avsbench import visualize


def blended_by_formula(image, regions, alpha, edges):
    """The overlay pixel by pixel: regions [(bool [H, W], colour)], edges [(bool, colour)]."""
    out = image.copy()
    for inside, colour in regions:
        for y, x in zip(*np.nonzero(inside)):
            v = image[y, x].astype(np.float32)
            blend = np.float32(1.0 - alpha) * v + np.float32(alpha) * np.float32(colour)
            out[y, x] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    for edge, colour in edges:
        out[edge] = colour
    return out


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_binary_overlay_equals_the_per_pixel_formula(alpha):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = np.zeros((37, 53), np.uint8)
    mask[3:9, 40:50] = 1  # two separate blobs: one bounding box holds background too
    mask[20:30, 2:7] = 1
    mask[25, 30] = 1
    fg = mask.astype(bool)
    edge = visualize._boundary(mask)
    expected = blended_by_formula(
        image, [(fg, visualize.HIGHLIGHT)], alpha, [(edge, visualize.CONTOUR)]
    )
    painter = visualize.MaskOverlay(mask, alpha=alpha)
    np.testing.assert_array_equal(painter(image), expected)
    same = image.copy()
    assert painter(same, in_place=True) is same
    np.testing.assert_array_equal(same, expected)
    empty = visualize.MaskOverlay(np.zeros((37, 53)), alpha=alpha)
    np.testing.assert_array_equal(empty(image), image)


def test_semantic_overlay_equals_the_per_pixel_formula():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ids = np.zeros((40, 60), np.int64)
    ids[2:12, 5:25] = 7
    ids[30:38, 40:58] = 7
    ids[15:28, 20:45] = 33
    palette = visualize._palette()
    edge = visualize._boundary(ids)
    regions = [(ids == c, palette[c]) for c in (7, 33)]
    edges = [(edge & (ids == c), palette[c]) for c in (7, 33)]
    expected = blended_by_formula(image, regions, 0.5, edges)
    np.testing.assert_array_equal(visualize.MaskOverlay(ids, semantic=True)(image), expected)


# ----------------------------------------------------------------------------- predict


def tiny_predictor():
    """A small TPAVI S4 model (64 px, 16 decoder channels), random weights and VGGish."""
    import torch

    from avsbench import config as C
    from avsbench.models import registry
    from avsbench.models.backbones.vggish import build_vggish
    from avsbench.predict import Predictor

    cfg = registry.synthetic(registry.preset("s4"))
    cfg = C.override(cfg, {"data.image_size": 64, "model.arch.decoder_channels": 16})
    torch.manual_seed(0)
    model = registry.build_model_for(cfg).eval()
    with torch.no_grad():  # untrained TPAVI predicts all background: give it varied masks
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    vggish = build_vggish(cfg.model).eval()
    return Predictor(model, vggish, cfg, torch.device("cpu"), {"weights": "random"})


def masks_computed_directly(video, predictor, size):
    """Per-second masks of `video`: frames sampled at s + 15/16 s, windows of T seconds
    (the last padded by repeating), audio cut from the whole decoded track, one forward
    pass per window, in one thread."""
    import torch

    from avsbench.engine import step
    from avsbench.media import inputs
    from avsbench.media.audio import decode_audio
    from avsbench.media.video import FrameSampler

    with av.open(str(video)) as container:
        rate = container.streams.audio[0].codec_context.sample_rate
    waveform = decode_audio(video)  # [S], the test videos' audio starts with the video
    rgbs = [rgb for _, _, rgb in FrameSampler(video, size[1], size[0])]
    p, per_clip, masks = predictor, predictor.frames_per_clip, []
    for first in range(0, len(rgbs), per_clip):
        window = rgbs[first : first + per_clip]
        n = len(window)
        frames = torch.from_numpy(
            np.stack([inputs.preprocess_frame(x, p.image_size, semantic=False) for x in window])
        )
        audio = waveform[first * rate : (first + n) * rate]
        audio = np.concatenate([audio, np.zeros((first + n) * rate - first * rate - len(audio))])
        log_mel = torch.from_numpy(inputs.audio_examples(audio.astype(np.float32), rate, n))
        with torch.inference_mode():
            emb = p.vggish(log_mel[:, None])  # [n, 128]
            clip = inputs.pad_window(frames, emb, per_clip, semantic=False)
            logits = step.forward(p.model, clip[0], clip[1], None).logits[:n]
        masks += list(step.predicted_masks(logits, semantic=False, size=size))
    return masks


import av  # noqa: E402 (after the helpers' own imports: the test videos need it anyway)

from tests.video_fixtures import make_video, no_leftovers, read_overlay  # noqa: E402


@pytest.fixture(scope="module")
def seven_seconds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast")
    return make_video(folder / "seven.mp4", 7, 10, 96, 64, audio_rate=16000)


@pytest.mark.slow
def test_threaded_predict_gives_the_masks_of_the_direct_computation(tmp_path, seven_seconds):
    from avsbench.predict import predict_video

    predictor = tiny_predictor()
    expected = masks_computed_directly(seven_seconds, predictor, (64, 96))
    assert len(expected) == 7  # windows of 5 and 2 (padded) seconds
    assert len({m.tobytes() for m in expected}) > 1  # the masks are not all alike
    assert 0 < np.mean(expected) < 1
    results = {
        background: predict_video(
            seven_seconds,
            predictor,
            out_dir=tmp_path / f"out_{background}",
            masks_per_second=2,
            background=background,
        )
        for background in (True, False)
    }
    for result in results.values():
        assert len(result.masks) == 7
        for mask, want in zip(result.masks, expected):
            np.testing.assert_array_equal(mask, want)
    # both paths paint and encode the same frames (every mask of the 2 per second)
    threaded, single = (read_overlay(results[b].paths["overlay"]) for b in (True, False))
    assert len(threaded) == len(single) == 70
    for a, b in zip(threaded, single):
        np.testing.assert_array_equal(a, b)
    seconds = [r.summary["seconds"] for r in results.values()]
    assert seconds[0] == seconds[1]


def running_threads():
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("avsbench-")]


def test_a_failing_overlay_write_stops_predict_cleanly(tmp_path, seven_seconds, monkeypatch):
    """An error in the overlay's thread (here: the disk fills up after 12 frames) reaches
    the caller as predict's one-line error; no thread and no output folder remain."""
    import errno

    from avsbench.media import writers
    from avsbench.predict import PredictError, predict_video

    write = writers.OverlayWriter.write_frame

    def fill_up(self, frame, time):
        if self.frames == 12:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        write(self, frame, time)

    monkeypatch.setattr(writers.OverlayWriter, "write_frame", fill_up)
    with pytest.raises(PredictError, match=r"out: cannot write the output \(disk full\)"):
        predict_video(seven_seconds, tiny_predictor(), out_dir=tmp_path / "out", background=True)
    assert no_leftovers(tmp_path) == []
    assert running_threads() == []


def test_ctrl_c_stops_the_background_threads(tmp_path, seven_seconds):
    from avsbench.predict import predict_video

    def interrupt(message):
        if message.startswith("predicted"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_video(
            seven_seconds,
            tiny_predictor(),
            out_dir=tmp_path / "out",
            log=interrupt,
            background=True,
        )
    assert no_leftovers(tmp_path) == []
    assert running_threads() == []
