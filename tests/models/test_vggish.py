"""VGGish: an independent functional forward, the PCA formula, official files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avsbench.config import ModelConfig
from avsbench.models.backbones.vggish import VGGish, build_vggish
from tests.golden_files import read_tsv
from tests.state_dict_files import layout_only_state_dict


def reference_vggish(params: dict[str, torch.Tensor], log_mel: torch.Tensor) -> torch.Tensor:
    """The official network written out by hand from the spec (MODEL.md, VGGish section)."""
    x = log_mel
    for block in (("0",), ("3",), ("6", "8"), ("11", "13")):
        for i in block:
            x = F.relu(
                F.conv2d(x, params[f"features.{i}.weight"], params[f"features.{i}.bias"], padding=1)
            )
        x = F.max_pool2d(x, 2)
    n, c, h, w = x.shape
    assert (c, h, w) == (512, 6, 4)
    # TensorFlow order: element (h, w, c) of the channels-last map, as a numpy reshape
    flat = torch.from_numpy(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)).reshape(n, -1))
    for i in ("0", "2", "4"):
        flat = F.relu(flat @ params[f"embeddings.{i}.weight"].T + params[f"embeddings.{i}.bias"])
    return flat


@pytest.fixture(scope="module")
def official_weights(vggish_file):
    """The values of the session's VGGish file (the published layout, random values)."""
    return torch.load(vggish_file, weights_only=True, mmap=True)


def test_forward_equals_independent_reference(official_weights):
    model = VGGish()
    model.load_official_state_dict(official_weights)
    log_mel = torch.randn(3, 1, 96, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(log_mel)
        expected = reference_vggish(official_weights, log_mel)
    assert got.shape == (3, 128)
    assert (expected > 0).any()  # the final ReLU leaves a non-trivial output
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_pca_quantisation_formula():
    model = VGGish(postprocess=True)
    gen = np.random.default_rng(0)
    vectors = gen.normal(size=(128, 128)).astype(np.float32) * 0.3
    means = gen.normal(size=128).astype(np.float32)
    model.pca_eigen_vectors.copy_(torch.from_numpy(vectors))
    model.pca_means.copy_(torch.from_numpy(means))
    emb = gen.normal(size=(4, 128)).astype(np.float32)
    got = model.pca_quantize(torch.from_numpy(emb)).numpy()
    pca = (vectors @ (emb.T - means[:, None])).T
    expected = np.round((np.clip(pca, -2.0, 2.0) + 2.0) * 255.0 / 4.0)
    assert (np.abs(pca) > 2).any() and (np.abs(pca) < 2).any()  # both branches of the clip
    np.testing.assert_allclose(got, expected, atol=1.0)  # ties may round either way
    assert np.mean(got == expected) > 0.99
    assert got.min() >= 0 and got.max() <= 255


def test_official_files_with_pca(tmp_path, vggish_file, official_weights):
    weights = vggish_file
    pca_file = tmp_path / "vggish_pca_params-970ea276.pth"
    vectors = np.eye(128, dtype=np.float64)[::-1].copy()  # numpy arrays, as released
    torch.save({"pca_eigen_vectors": vectors, "pca_means": np.full((128, 1), 0.25)}, pca_file)
    model = VGGish()
    model.load_official_state_dict(weights, pca=pca_file)
    assert model.postprocess
    assert torch.equal(model.embeddings[4].weight, official_weights["embeddings.4.weight"])
    assert torch.equal(model.pca_means, torch.full((128,), 0.25))
    log_mel = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        raw = reference_vggish(official_weights, log_mel)
        expected = torch.round((torch.flip(raw - 0.25, [1]).clamp(-2, 2) + 2) * 255 / 4)
        torch.testing.assert_close(model(log_mel), expected)


def test_bad_files(tmp_path, official_weights):
    with pytest.raises(FileNotFoundError, match="vggish-10086976.pth"):
        VGGish().load_official_state_dict(tmp_path / "vggish-10086976.pth")
    broken = layout_only_state_dict(read_tsv("vggish.tsv"))  # names and shapes: a few bytes
    broken["embeddings.4.weight"] = torch.zeros(64, 4096)
    del broken["features.13.bias"]
    path = tmp_path / "other.pth"
    torch.save(broken, path)
    with pytest.raises(
        ValueError,
        match=r"(?s)other.pth.*missing 1: features.13.bias\n.*"
        r"embeddings.4.weight: file \(64, 4096\) vs model \(128, 4096\)",
    ):
        VGGish().load_official_state_dict(path)
    bad_pca = tmp_path / "pca.pth"
    torch.save({"pca_means": torch.zeros(128)}, bad_pca)
    with pytest.raises(ValueError, match="pca_eigen_vectors"):
        VGGish().load_official_state_dict(official_weights, pca=bad_pca)


def test_build_vggish_frozen_and_deterministic(vggish_file, official_weights):
    a, b = build_vggish(ModelConfig(method="tpavi")), build_vggish(ModelConfig(method="tpavi"))
    assert not a.training and not any(p.requires_grad for p in a.parameters())
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    loaded = build_vggish(ModelConfig(method="tpavi", vggish_weights=str(vggish_file)))
    assert torch.equal(loaded.features[13].bias, official_weights["features.13.bias"])
