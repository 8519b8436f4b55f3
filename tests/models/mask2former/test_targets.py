"""Semantic targets (avsbench/models/mask2former/targets.py): one mask per present class."""

from __future__ import annotations

import pytest
import torch

from avsbench.models.mask2former.targets import class_maps, frame_target, semantic_targets


def test_binary_masks_give_background_and_object():
    masks = torch.zeros(3, 4, 4)
    masks[0, 1:3, 1:3] = 1.0  # object and background
    masks[2] = 1.0  # object only
    rows, targets = semantic_targets("s4", masks, torch.tensor([1.0, 1.0, 1.0]))
    assert rows.tolist() == [0, 1, 2]
    assert targets[0].labels.tolist() == [0, 1]
    assert torch.equal(targets[0].masks[0], 1 - masks[0])
    assert torch.equal(targets[0].masks[1], masks[0])
    assert targets[1].labels.tolist() == [0]  # empty GT: background only
    assert torch.equal(targets[1].masks, torch.ones(1, 4, 4))
    assert targets[2].labels.tolist() == [1]
    assert targets[0].masks.dtype == torch.float32


def test_only_annotated_frames_get_targets():
    masks = torch.zeros(10, 2, 2, dtype=torch.int64)
    masks[5] = 7
    gt_valid = torch.zeros(10)
    gt_valid[[0, 5]] = 1
    rows, targets = semantic_targets("avss", masks, gt_valid)
    assert rows.tolist() == [0, 5]
    assert [t.labels.tolist() for t in targets] == [[0], [7]]


def test_ignore_label_is_no_class_and_zero_in_every_mask():
    ids = torch.tensor([[0, 3], [255, 70]])
    target = frame_target(ids)
    assert target.labels.tolist() == [0, 3, 70]
    assert target.masks[:, 1, 0].tolist() == [0.0, 0.0, 0.0]
    assert frame_target(torch.full((2, 2), 255)).masks.shape == (0, 2, 2)


@pytest.mark.parametrize(
    "setting, value, message",
    [("s4", 2.0, r"value\(s\) \[2\]"), ("ms3", 0.5, "fractional"), ("avss", 71, r"\[71\]"),
     ("avss", -1, r"\[-1\]")],
)  # fmt: skip
def test_bad_values_are_refused(setting, value, message):
    dtype = torch.float32 if setting != "avss" else torch.int64
    masks = torch.zeros(1, 2, 2, dtype=dtype)
    masks[0, 0, 0] = value
    with pytest.raises(ValueError, match=message):
        class_maps(setting, masks)


def test_unknown_setting_and_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="unknown setting 'avs'"):
        class_maps("avs", torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"gt_valid must be \[N=2\]"):
        semantic_targets("s4", torch.zeros(2, 2, 2), torch.ones(3))


def test_labels_are_the_sorted_distinct_values_of_a_random_map():
    import numpy as np

    ids = torch.randint(0, 71, (9, 9), generator=torch.Generator().manual_seed(0))
    ids[ids % 7 == 0] = 255
    target = frame_target(ids)
    expected = np.unique(ids.numpy())
    assert target.labels.tolist() == expected[expected != 255].tolist()
    for label, mask in zip(target.labels.tolist(), target.masks):
        assert torch.equal(mask, (ids == label).float())
