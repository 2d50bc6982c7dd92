"""``siamtext serve``: the arguments reach the settings; unsafe or bad ones fail first."""

from __future__ import annotations

import pytest

from siamtext.cli import build_parser, main


def test_serve_is_registered():
    args = build_parser().parse_args(["serve", "some/model", "--index", "i", "--port", "9000",
                                      "--max-batch-tokens", "512", "--max-wait-ms", "0",
                                      "--backend", "onnx", "--file-name", "model_qint8.onnx"])
    assert args.command == "serve" and args.model == "some/model"
    assert (args.port, args.max_batch_tokens, args.max_wait_ms) == (9000, 512, 0.0)
    assert (args.backend, args.file_name, args.host) == ("onnx", "model_qint8.onnx",
                                                         "127.0.0.1")


def test_write_routes_on_the_network_need_a_key(tmp_path, capsys):
    code = main(["serve", str(tmp_path / "no-model"), "--index", str(tmp_path / "idx"),
                 "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and "--api-key-file" in err and "--insecure" in err
    assert not (tmp_path / "idx").exists()  # refused before anything was opened


@pytest.mark.parametrize("argv, message", [
    (["--max-batch-tokens", "0"], "max_batch_tokens must be a positive integer"),
    (["--max-wait-ms", "-1"], "max_wait_ms"),
    (["--port", "0"], "--port"),
    (["--file-name", "x.onnx"], "--file-name selects an exported file"),
    (["--threshold", "2"], "duplicate_threshold"),
])
def test_bad_settings_fail_before_loading(tmp_path, capsys, argv, message):
    assert main(["serve", str(tmp_path / "no-model"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_key_file_is_named(tmp_path, capsys):
    keys = tmp_path / "keys.txt"
    keys.write_text("short\n")
    assert main(["serve", str(tmp_path / "m"), "--api-key-file", str(keys)]) == 2
    assert "keys.txt:1" in capsys.readouterr().err
