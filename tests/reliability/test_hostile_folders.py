"""Hostile model and classifier folders: each is refused with a message naming the file, no
code in it runs, and no path it names outside itself is followed (each such path points at a
real, loadable file, so following it would load instead of refusing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from siamtext import SiamText
from siamtext.classify import DuplicateDetector, IntentClassifier
from siamtext.folder_checks import check_safetensors, path_inside

from .hostile import (
    MARKER_NAME,
    check_refused,
    hostile_classifier_folders,
    hostile_model_folders,
)

MODEL_CASES = sorted([
    "only_pickles", "auto_map_config", "auto_map_unknown_type", "auto_map_tokenizer",
    "tokenizer_file_escape", "vocab_file_absolute", "fast_tokenizer_files_escape",
    "modules_json_escape", "modules_json_absolute", "pooling_escape", "shard_escape",
    "weights_field_escape", "truncated_safetensors", "truncated_header", "truncated_to_4_bytes",
    "config_not_json",
])
CLASSIFIER_CASES = sorted([
    "intent_dim_mismatch", "intent_extra_label", "intent_missing_label",
    "intent_truncated_tensors", "intent_only_pickles", "intent_encoder_auto_map",
    "intent_json_broken", "dedup_three_labels", "dedup_threshold_out_of_range",
    "dedup_bad_calibration",
])


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory, tiny_bert_dir) -> tuple[dict, Path]:
    base = tmp_path_factory.mktemp("hostile_models")
    return hostile_model_folders(tiny_bert_dir, base), base


@pytest.fixture(scope="module")
def classifier_folders(tmp_path_factory, tiny_model) -> tuple[dict, Path]:
    base = tmp_path_factory.mktemp("hostile_classifiers")
    intent = IntentClassifier(tiny_model).fit(["lost card", "card gone", "hello", "hi"],
                                              ["card", "card", "greet", "greet"])
    intent.save(base / "intent_good")
    dedup = DuplicateDetector(tiny_model).fit(
        [("a", "a"), ("a", "b"), ("lost card", "card lost"), ("hi", "card")], [1, 0, 1, 0])
    dedup.save(base / "dedup_good")
    return hostile_classifier_folders(base / "intent_good", base / "dedup_good", base), base


def test_every_hostile_model_case_is_built(model_folders, classifier_folders):
    assert sorted(model_folders[0]) == MODEL_CASES
    assert sorted(classifier_folders[0]) == CLASSIFIER_CASES


@pytest.mark.parametrize("case", MODEL_CASES)
def test_hostile_model_folder_is_refused_naming_the_file(model_folders, case):
    folders, base = model_folders
    folder, file_name = folders[case]
    problem = check_refused(lambda: SiamText(folder, device="cpu"), file_name,
                            base / MARKER_NAME)
    assert problem is None, problem


@pytest.mark.parametrize("case", CLASSIFIER_CASES)
def test_hostile_classifier_folder_is_refused_naming_the_file(classifier_folders, case):
    folders, base = classifier_folders
    folder, kind, file_name = folders[case]
    cls = IntentClassifier if kind == "intent" else DuplicateDetector
    problem = check_refused(lambda: cls.load(folder, device="cpu"), file_name,
                            base / MARKER_NAME)
    assert problem is None, problem


def test_the_good_folders_still_load(model_folders, classifier_folders, tiny_bert_dir):
    _, base = classifier_folders
    assert IntentClassifier.load(base / "intent_good").predict(["lost card"]).shape == (1,)
    assert DuplicateDetector.load(base / "dedup_good").is_duplicate("a", "a") is True
    SiamText(tiny_bert_dir, device="cpu")


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "..\\x", "C:\\x",
                                  "a/b/../../../x"])
def test_path_inside_refuses_every_way_out(tmp_path, path):
    with pytest.raises(ValueError, match="leads outside"):
        path_inside(tmp_path, path, tmp_path / "modules.json")


@pytest.mark.parametrize("path", ["", "1_Pooling", "a/b.json", "./x", "x..y"])
def test_path_inside_keeps_paths_inside(tmp_path, path):
    assert path_inside(tmp_path, path, tmp_path / "modules.json") == tmp_path / path


def test_safetensors_check_reads_the_header_only(tmp_path, tiny_bert_dir):
    check_safetensors(tiny_bert_dir / "model.safetensors")
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00[1, 2, 3]       ")
    with pytest.raises(ValueError, match="x.safetensors is not a safetensors file"):
        check_safetensors(bad)
