"""siamtext.tokenization: right-padding into arrays and tensors."""

from __future__ import annotations

import numpy as np
import torch

from siamtext.tokenization import as_tensors, pad_arrays

IDS = [[101, 7, 8, 102], [101, 9, 102], [101, 102]]


def test_pad_arrays_right_pads_with_a_mask():
    out = pad_arrays(IDS, pad_id=0, token_type_ids=True)
    np.testing.assert_array_equal(out["input_ids"],
                                  [[101, 7, 8, 102], [101, 9, 102, 0], [101, 102, 0, 0]])
    np.testing.assert_array_equal(out["attention_mask"],
                                  [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(out["token_type_ids"], np.zeros((3, 4)))
    assert all(v.dtype == np.int64 for v in out.values())
    assert set(pad_arrays(IDS, pad_id=5, token_type_ids=False)) == {"input_ids", "attention_mask"}
    assert pad_arrays(IDS, pad_id=5, token_type_ids=False)["input_ids"][2, 3] == 5


def test_as_tensors_gives_long_tensors_on_the_arrays_memory():
    arrays = pad_arrays(IDS, pad_id=0, token_type_ids=True)
    tensors = as_tensors(arrays, torch.device("cpu"))
    assert set(tensors) == set(arrays)
    for name, value in tensors.items():
        assert value.dtype == torch.long
        np.testing.assert_array_equal(value.numpy(), arrays[name])
    arrays["input_ids"][2, 3] = 42  # no copy on the CPU
    assert tensors["input_ids"][2, 3].item() == 42


def test_as_tensors_moves_to_another_device():
    tensors = as_tensors(pad_arrays(IDS, pad_id=0, token_type_ids=False), torch.device("meta"))
    assert {v.device.type for v in tensors.values()} == {"meta"}
    assert tensors["attention_mask"].shape == (3, 4)
