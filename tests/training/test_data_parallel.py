"""Data-parallel training on this machine's CPUs: 2 gloo processes started by ``torchrun``
(or by hand) on the tiny model, checked against one process with the whole global batch.

Tolerances: gradients within 1e-5 absolute (+1e-4 relative): the ranks embed the same rows
as the reference, in other sub-batches, so only float rounding differs. Weights after a few
AdamW steps within 2e-4: AdamW divides each gradient by its running root mean square, so a
rounding difference in a near-zero gradient moves a weight by up to ~lr x 1e-1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from siamtext import SiamText
from siamtext.training import fit

from .ddp_cases import LOSS_FACTORIES, REFERENCE, gradients, no_dropout_copy, train_rows

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(scenario: str, config: dict, tmp: Path, nproc: int = 2,
             timeout: float = 240) -> subprocess.CompletedProcess:
    path = tmp / f"{scenario}.json"
    path.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(free_port()), str(WORKER), scenario, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.fixture(scope="module")
def nodrop_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return no_dropout_copy(tiny_bert_dir, tmp_path_factory.mktemp("ddp") / "tiny")


@pytest.fixture(scope="module")
def loss_run(nodrop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp_losses")
    check(torchrun("losses", {"model": str(nodrop_dir), "out": str(out)}, out))
    return out


@pytest.mark.parametrize("case", sorted(LOSS_FACTORIES))
def test_two_ranks_give_the_gradients_of_one_process_with_the_global_batch(
        case: str, nodrop_dir: Path, loss_run: Path) -> None:
    model = SiamText(nodrop_dir, device="cpu")
    model.train()
    reference = REFERENCE.get(case, case)
    _, expected = gradients(model, LOSS_FACTORIES[reference](model), reference)
    for rank in (0, 1):
        got = load_file(str(loss_run / f"{case}-rank{rank}.safetensors"))
        assert got.keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(got[name], grad, atol=1e-5, rtol=1e-4,
                                       msg=f"{case}, rank {rank}: gradient of {name}")


def test_gradients_of_the_global_batch_differ_from_a_rank_alone(nodrop_dir: Path,
                                                                 loss_run: Path) -> None:
    """The comparison above can fail: one rank's slice alone gives other gradients."""
    model = SiamText(nodrop_dir, device="cpu")
    model.train()
    _, alone = gradients(model, LOSS_FACTORIES["batch_hard"](model), "batch_hard", 2, 0)
    got = load_file(str(loss_run / "batch_hard-rank0.safetensors"))
    name = "transformer.embeddings.word_embeddings.weight"
    assert not torch.allclose(got[name], alone[name], atol=1e-5)


def test_each_anchor_keeps_its_own_positive_after_the_gather(loss_run: Path) -> None:
    values = json.loads((loss_run / "values-rank1.json").read_text())
    assert values["gathered_rows"] == 8
    # log(1 + 7 e^-20) ~ 1.4e-8 when every anchor meets its own positive; ~20 otherwise
    assert values["one_hot_alignment"] < 1e-6


def test_unequal_slices_are_refused_on_every_rank_with_the_counts(loss_run: Path) -> None:
    for rank in (0, 1):
        values = json.loads((loss_run / f"values-rank{rank}.json").read_text())
        assert "the ranks hold [3, 4] rows" in values["unequal_rows_error"]


def test_only_rank_zero_writes_a_saved_model(loss_run: Path) -> None:
    assert (loss_run / "saved-rank0" / "model.safetensors").is_file()
    assert not (loss_run / "saved-rank1").exists()


@pytest.fixture(scope="module")
def train_run(nodrop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp_train")
    config = {"model": str(nodrop_dir), "out": str(out), "loss": "SupervisedContrastiveLoss",
              "batch_size": 8, "epochs": 0.2}
    check(torchrun("train", config, out))
    return out


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_two_ranks_train_like_one_process_with_the_global_batch(nodrop_dir: Path,
                                                                train_run: Path) -> None:
    one = SiamText(nodrop_dir, device="cpu")
    fit(one, train_rows(), "SupervisedContrastiveLoss", batch_size=16, epochs=0.2,
        learning_rate=1e-3, show_progress=False, seed=3, logging_steps=1000)
    two = _weights(train_run / "full-final")
    changed = 0
    for name, weight in one.transformer.state_dict().items():
        torch.testing.assert_close(two[name], weight, atol=2e-4, rtol=0, msg=name)
        changed += not torch.equal(weight, _weights(nodrop_dir)[name])
    assert changed > 10  # training moved the weights


def test_a_resumed_two_rank_run_ends_with_the_uninterrupted_weights(train_run: Path) -> None:
    full, resumed = _weights(train_run / "full-final"), _weights(train_run / "resumed-final")
    for name, weight in full.items():
        torch.testing.assert_close(resumed[name], weight, atol=1e-6, rtol=0, msg=name)


def test_only_rank_zero_writes_checkpoints_and_the_final_model(train_run: Path) -> None:
    writes = (train_run / "writes-rank0.txt").read_text().split()
    assert any("checkpoint-2" in w for w in writes) and any("final" in w for w in writes)
    assert not (train_run / "writes-rank1.txt").exists()


def test_the_card_reports_per_device_and_global_batch(train_run: Path) -> None:
    card = json.loads((train_run / "card.json").read_text())
    assert (card["batch_size"], card["world_size"], card["global_batch_size"]) == (8, 2, 16)
    assert card["rows_seen"] == 8 * card["steps"]  # this rank's share of every step


def test_a_dead_rank_stops_the_other_with_a_clear_error(nodrop_dir: Path,
                                                        tmp_path: Path) -> None:
    """No launcher to clean up: rank 0 must notice on its own that rank 1 is gone."""
    config = tmp_path / "crash.json"
    config.write_text(json.dumps({"model": str(nodrop_dir), "out": str(tmp_path)}))
    port = str(free_port())
    procs = []
    start = time.monotonic()
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "crash", str(config)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        _, err0 = procs[0].communicate(timeout=120)
        procs[1].communicate(timeout=30)
    finally:
        for p in procs:
            p.kill()
    assert procs[1].returncode == 3
    assert procs[0].returncode not in (0, None)
    assert "another process of this data-parallel run stopped" in err0, err0[-3000:]
    assert time.monotonic() - start < 120


def _intents_csv(folder: Path) -> Path:
    import csv

    rows = train_rows()
    path = folder / "intents.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(rows["text"], rows["label"], strict=True))
    return path


def _train_args(data: Path, model: Path, out: Path) -> list[str]:
    return ["-m", "siamtext", "train", str(data), "--model", str(model), "--output-dir",
            str(out), "--loss", "SupervisedContrastiveLoss", "--batch-size", "8",
            "--epochs", "0.2", "--no-progress"]


def accelerate_launch(port: str) -> list[str]:
    # --multi_gpu is accelerate's switch for several torch.distributed processes; on a
    # machine without a GPU siamtext runs them on the CPUs with gloo
    return [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu",
            "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", port]


def check_two_rank_training(stdout: str, stderr: str, out: Path) -> None:
    # 320 rows / global batch 16 = 20 steps an epoch; 0.2 epoch = 4 steps, printed once
    assert stdout.count("Trained SupervisedContrastiveLoss") == 1, stdout
    assert "4 steps" in stdout
    assert "global batch 16" in stderr
    card = json.loads((out / "siamtext_card.json").read_text())
    assert card["training"]["world_size"] == 2
    assert SiamText(out, device="cpu").encode(["hello"]).shape == (1, 32)


def test_siamtext_train_runs_data_parallel_under_accelerate_launch(
        nodrop_dir: Path, tmp_path: Path) -> None:
    """``torchrun`` runs ``siamtext train`` in the rendezvous test below."""
    out = tmp_path / "model"
    cmd = accelerate_launch(str(free_port())) + _train_args(_intents_csv(tmp_path),
                                                            nodrop_dir, out)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    check(result)
    check_two_rank_training(result.stdout, result.stderr, out)


def test_a_user_script_calling_fit_runs_data_parallel_under_accelerate_launch(
        nodrop_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "script.json"
    config.write_text(json.dumps({"model": str(nodrop_dir), "out": str(tmp_path)}))
    cmd = accelerate_launch(str(free_port())) + [str(WORKER), "script", str(config)]
    check(subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}))
    cards = [json.loads((tmp_path / f"card-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(c["world_size"] == 2 and c["global_batch_size"] == 16 for c in cards)
    assert cards[0]["steps"] == cards[1]["steps"] == 4  # 320 rows / 16 x 0.2 epoch
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_two_nodes_meet_at_a_rendezvous_endpoint(nodrop_dir: Path, tmp_path: Path) -> None:
    """Multi-node works the same way: here two 'nodes' of one process each on this host."""
    endpoint = f"127.0.0.1:{free_port()}"
    data, out = _intents_csv(tmp_path), tmp_path / "model"
    nodes = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
               "--rdzv-id", "siamtext-test", *_train_args(data, nodrop_dir, out)]
        nodes.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    try:
        outputs = [p.communicate(timeout=240) for p in nodes]
    finally:
        for p in nodes:
            p.kill()
    for p, (stdout, stderr) in zip(nodes, outputs, strict=True):
        assert p.returncode == 0, stderr[-4000:]
    # each node is its own torchrun; rank 0's prints the summary, both log the batch
    check_two_rank_training("".join(o for o, _ in outputs),
                            "".join(e for _, e in outputs), out)
