"""``siamtext.corpus.encode_file``: streaming, sharded, resumable encoding on the tiny model."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from siamtext.corpus import HubSource, TextSource, encode_file, parse_shard, shard_rows

N, CHUNK = 50, 7


@pytest.fixture(scope="module")
def texts(corpus) -> list[str]:
    out = list(corpus[:N])
    out[3] = ""  # an empty line keeps its row
    return out


@pytest.fixture(scope="module")
def expected(tiny_model, texts) -> np.ndarray:
    return tiny_model.encode(texts, batch_size=8)


def write_input(path, texts: list[str]):
    """``texts`` as a txt, csv, tsv, jsonl or parquet file, by ``path``'s extension."""
    suffix = path.suffix
    if suffix == ".txt":
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    elif suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="," if suffix == ".csv" else "\t")
            writer.writerow(["id", "text"])
            writer.writerows([i, t] for i, t in enumerate(texts))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                                for i, t in enumerate(texts)), encoding="utf-8")
    else:
        table = pa.table({"id": list(range(len(texts))), "text": texts})
        pq.write_table(table, path, row_group_size=11)
    return path


def read_output(path) -> tuple[np.ndarray, np.ndarray | None]:
    """(embeddings, ids or None) of a written file."""
    if path.suffix == ".npy":
        return np.load(path), None
    if path.suffix == ".safetensors":
        return load_file(path)["embeddings"], None
    table = pq.read_table(path)
    dim = table.schema.field("embedding").type.list_size
    flat = table.column("embedding").combine_chunks().flatten()
    return np.asarray(flat).reshape(len(table), dim), table.column("id").to_numpy()


@pytest.mark.parametrize("fmt", [".txt", ".csv", ".tsv", ".jsonl", ".parquet"])
def test_inputs_stream_to_npy(tiny_model, texts, expected, tmp_path, fmt):
    source = write_input(tmp_path / f"in{fmt}", texts)
    assert len(TextSource(source)) == N and list(TextSource(source)) == texts
    out = encode_file(tiny_model, source, tmp_path / "out.npy", batch_size=8, chunk_size=CHUNK,
                      show_progress=False)
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not (tmp_path / "out.npy.partial").exists()
    assert not (tmp_path / "out.npy.progress.json").exists()


@pytest.mark.parametrize("fmt", [".safetensors", ".parquet"])
def test_outputs(tiny_model, texts, expected, tmp_path, fmt):
    source = write_input(tmp_path / "in.txt", texts)
    out = encode_file(tiny_model, source, tmp_path / f"out{fmt}", batch_size=8,
                      chunk_size=CHUNK, show_progress=False)
    got, ids = read_output(out)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    if fmt == ".parquet":
        assert ids.tolist() == list(range(N))
        assert pq.ParquetFile(out).metadata.num_row_groups == -(-N // CHUNK)


@pytest.mark.parametrize("fmt", [".npy", ".safetensors", ".parquet"])
def test_float16_is_float32_rounded(tiny_model, texts, expected, tmp_path, fmt):
    source = write_input(tmp_path / "in.txt", texts)
    out = encode_file(tiny_model, source, tmp_path / f"out{fmt}", batch_size=8,
                      chunk_size=CHUNK, dtype="float16", show_progress=False)
    got, _ = read_output(out)
    assert got.dtype == np.float16
    # the same chunks in float32, rounded: bit for bit (a one-call encode of every text
    # agrees to ~1e-8 only, which can land a value on the other side of a float16 step)
    full = encode_file(tiny_model, source, tmp_path / f"full{fmt}", batch_size=8,
                       chunk_size=CHUNK, show_progress=False)
    np.testing.assert_array_equal(got, read_output(full)[0].astype(np.float16))
    np.testing.assert_array_max_ulp(got, expected.astype(np.float16), maxulp=1)


@pytest.mark.parametrize("fmt", [".npy", ".parquet"])
def test_shards_concatenate_to_the_whole(tiny_model, texts, expected, tmp_path, fmt):
    source = write_input(tmp_path / "in.csv", texts)
    parts, ids = [], []
    for i in range(3):
        out = encode_file(tiny_model, source, tmp_path / f"s{i}{fmt}", batch_size=8,
                          chunk_size=CHUNK, shard=f"{i}/3", show_progress=False)
        emb, shard_ids = read_output(out)
        start, stop = shard_rows(N, (i, 3))
        assert len(emb) == stop - start
        parts.append(emb)
        ids.extend([] if shard_ids is None else shard_ids.tolist())
    np.testing.assert_allclose(np.concatenate(parts), expected, atol=1e-6)
    if fmt == ".parquet":
        assert ids == list(range(N))  # global row numbers


def test_shard_parsing():
    assert parse_shard("1/3") == (1, 3) and parse_shard((0, 1)) == (0, 1)
    assert parse_shard(None) is None
    for bad in ["3/3", "-1/2", "1/0", "a/b", "1", (2, 2)]:
        with pytest.raises(ValueError, match=rf"shard must be .*got {bad!r}".replace("(", r"\(")
                           .replace(")", r"\)")):
            parse_shard(bad)
    assert [shard_rows(10, (i, 3)) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]


class Interrupt(RuntimeError):
    pass


def counting_encode(monkeypatch, model, fail_on: int | None = None) -> list[int]:
    """Patch ``model.encode`` to count its calls (and raise on call ``fail_on``)."""
    calls: list[int] = []
    original = model.encode

    def encode(texts, **kwargs):
        calls.append(len(texts))
        if fail_on is not None and len(calls) == fail_on:
            raise Interrupt("killed")
        return original(texts, **kwargs)

    monkeypatch.setattr(model, "encode", encode)
    return calls


@pytest.mark.parametrize("fmt", [".npy", ".safetensors", ".parquet"])
def test_resume_after_interruption_is_byte_identical(tiny_model, texts, tmp_path, monkeypatch,
                                                     fmt):
    source = write_input(tmp_path / "in.jsonl", texts)
    whole = encode_file(tiny_model, source, tmp_path / f"whole{fmt}", batch_size=8,
                        chunk_size=CHUNK, show_progress=False)
    out = tmp_path / f"out{fmt}"
    with monkeypatch.context() as patch:
        counting_encode(patch, tiny_model, fail_on=3)
        with pytest.raises(Interrupt):
            encode_file(tiny_model, source, out, batch_size=8, chunk_size=CHUNK,
                        show_progress=False)
    assert not out.exists()
    progress = json.loads((tmp_path / f"out{fmt}.progress.json").read_text())
    assert progress["done_chunks"] == 2
    with pytest.raises(ValueError, match=r"other settings \(dtype: was 'float32', now 'float16'"):
        encode_file(tiny_model, source, out, batch_size=8, chunk_size=CHUNK, dtype="float16",
                    show_progress=False)
    with monkeypatch.context() as patch:
        calls = counting_encode(patch, tiny_model)
        encode_file(tiny_model, source, out, batch_size=8, chunk_size=CHUNK,
                    show_progress=False)
    assert len(calls) == -(-N // CHUNK) - 2  # only the unfinished chunks
    assert max(calls) <= CHUNK
    assert out.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.jsonl", f"whole{fmt}", f"out{fmt}"])


def test_resume_of_a_shard_and_overwrite(tiny_model, texts, tmp_path, monkeypatch):
    source = write_input(tmp_path / "in.txt", texts)
    whole = [encode_file(tiny_model, source, tmp_path / f"whole{i}.npy", batch_size=8,
                         chunk_size=4, shard=f"{i}/2", show_progress=False) for i in range(2)]
    out, chunks = tmp_path / "out.npy", -(-(N // 2) // 4)
    with monkeypatch.context() as patch:
        counting_encode(patch, tiny_model, fail_on=2)
        with pytest.raises(Interrupt):
            encode_file(tiny_model, source, out, batch_size=8, chunk_size=4, shard="1/2",
                        show_progress=False)
    with pytest.raises(ValueError, match=r"shard: was \[1, 2\], now \[0, 2\]"):
        encode_file(tiny_model, source, out, batch_size=8, chunk_size=4, shard="0/2",
                    show_progress=False)
    with monkeypatch.context() as patch:  # overwrite discards the other run's partial work
        calls = counting_encode(patch, tiny_model)
        encode_file(tiny_model, source, out, batch_size=8, chunk_size=4, shard="0/2",
                    show_progress=False, overwrite=True)
    assert len(calls) == chunks
    assert out.read_bytes() == whole[0].read_bytes()
    with monkeypatch.context() as patch:  # replacing an output: the old one stays meanwhile
        counting_encode(patch, tiny_model, fail_on=2)
        with pytest.raises(Interrupt):
            encode_file(tiny_model, source, out, batch_size=8, chunk_size=4, shard="1/2",
                        show_progress=False, overwrite=True)
    assert out.read_bytes() == whole[0].read_bytes()
    with monkeypatch.context() as patch:  # the same command again resumes
        calls = counting_encode(patch, tiny_model)
        encode_file(tiny_model, source, out, batch_size=8, chunk_size=4, shard="1/2",
                    show_progress=False, overwrite=True)
    assert len(calls) == chunks - 1
    assert out.read_bytes() == whole[1].read_bytes()


def test_empty_and_null_cells_are_kept_as_empty_strings(tiny_model, tmp_path):
    empty = tiny_model.encode("")
    lines = tmp_path / "in.txt"
    lines.write_bytes(b"first\n\nthird\r\nlast without newline")
    assert list(TextSource(lines)) == ["first", "", "third", "last without newline"]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "a"}\n{"text": null}\n\n{"text": 3}\nnot json\n{"other": "x"}\n')
    assert len(TextSource(jsonl)) == 5 and list(TextSource(jsonl)) == ["a", "", "", "", ""]
    table = pa.table({"text": ["a", None, "c"]})
    pq.write_table(table, tmp_path / "in.parquet")
    assert list(TextSource(tmp_path / "in.parquet")) == ["a", "", "c"]
    short = tmp_path / "in.csv"
    short.write_text("id,text\n1,a\n2\n\n3,\"multi\nline\"\n")  # a blank line is no record
    assert len(TextSource(short)) == 3 and list(TextSource(short)) == ["a", "", "multi\nline"]
    out = encode_file(tiny_model, tmp_path / "in.parquet", tmp_path / "out.npy",
                      show_progress=False)
    np.testing.assert_allclose(np.load(out)[1], empty, atol=1e-6)


def test_an_empty_input_gives_zero_rows(tiny_model, tmp_path):
    (tmp_path / "in.txt").write_text("")
    for fmt in (".npy", ".safetensors", ".parquet"):
        got, _ = read_output(encode_file(tiny_model, tmp_path / "in.txt", tmp_path / f"o{fmt}",
                                         show_progress=False))
        assert got.shape == (0, tiny_model.embedding_dim)


def test_errors_name_the_argument(tiny_model, texts, tmp_path):
    source = write_input(tmp_path / "in.csv", texts)
    (tmp_path / "taken.npy").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"output '.*taken.npy' exists; pass overwrite=True"):
        encode_file(tiny_model, source, tmp_path / "taken.npy")
    assert (tmp_path / "taken.npy").read_bytes() == b"x"
    encode_file(tiny_model, source, tmp_path / "taken.npy", overwrite=True, show_progress=False)
    assert np.load(tmp_path / "taken.npy").shape == (N, tiny_model.embedding_dim)
    with pytest.raises(ValueError, match=r"no column 'question' \(columns: \['id', 'text'\]\)"):
        encode_file(tiny_model, source, tmp_path / "o.npy", column="question")
    with pytest.raises(ValueError, match=r"unsupported file type '.h5'; expected one of "
                                         r"\['.npy', '.parquet', '.safetensors'\]"):
        encode_file(tiny_model, source, tmp_path / "o.h5")
    (tmp_path / "in.xml").write_text("<a/>")
    with pytest.raises(ValueError, match=r"unsupported file type '.xml'; expected one of "
                                         r"\['.csv', '.jsonl', '.parquet', '.tsv', '.txt'\]"):
        encode_file(tiny_model, tmp_path / "in.xml", tmp_path / "o.npy")
    with pytest.raises(FileNotFoundError, match="input file not found"):
        encode_file(tiny_model, tmp_path / "missing.txt", tmp_path / "o.npy")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0"):
        encode_file(tiny_model, source, tmp_path / "o.npy", chunk_size=0)
    with pytest.raises(ValueError, match=r"dtype must be one of .*got 'int8'"):
        encode_file(tiny_model, source, tmp_path / "o.npy", dtype="int8")
    with pytest.raises(ValueError, match="shard must be .*got '3/3'"):
        encode_file(tiny_model, source, tmp_path / "o.npy", shard="3/3")
    assert not os.path.exists(tmp_path / "o.npy")


class ZeroModel:
    """Stands in for a model (rows of ones), so that the test measures the I/O alone."""

    model_name_or_path = "zero"
    embedding_dim = 64

    def encode(self, texts, batch_size=32, show_progress=None):
        return np.full((len(texts), self.embedding_dim), 1.0, dtype=np.float32)


@pytest.mark.parametrize("fmt", [".npy", ".safetensors", ".parquet"])
def test_memory_does_not_grow_with_the_corpus(tmp_path, fmt):
    import tracemalloc

    source = tmp_path / "big.txt"
    with source.open("w") as f:
        for i in range(100_000):
            f.write(f"text number {i} with a few more words to make it longer\n")
    tracemalloc.start()
    try:
        out = encode_file(ZeroModel(), source, tmp_path / f"out{fmt}", chunk_size=1000,
                          show_progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the output holds 100,000 x 64 float32 (26 MB), the input 6 MB; one chunk is 256 KB
    assert peak < 4_000_000, peak
    assert read_output(out)[0].shape == (100_000, 64)


_RESIDENT_SCRIPT = """
import resource, sys
import numpy as np
from siamtext.corpus import encode_file

class Ones:
    model_name_or_path = "ones"
    embedding_dim = 384
    def encode(self, texts, batch_size=32, show_progress=None):
        return np.ones((len(texts), 384), dtype=np.float32)

source, output = sys.argv[1], sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
encode_file(Ones(), source, output, chunk_size=10_000, show_progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("fmt", [".npy", ".safetensors"])
def test_resident_memory_does_not_grow_with_the_output_file(tmp_path, fmt):
    """tracemalloc does not see pages of a memory-mapped file, which count in the process's
    resident memory: a 200,000 x 384 output (307 MB) must not raise the peak RSS by its size."""
    import subprocess
    import sys

    source = tmp_path / "big.txt"
    source.write_text("x\n" * 200_000)
    out = subprocess.run([sys.executable, "-c", _RESIDENT_SCRIPT, str(source),
                          str(tmp_path / f"out{fmt}")], capture_output=True, text=True,
                         check=True)
    growth_kib = int(out.stdout.split()[-1])
    assert growth_kib < 60_000, growth_kib  # one chunk is 15 MB; the file is 300,000 KiB


def test_a_dataset_folder_streams_like_a_hub_dataset(tiny_model, texts, expected, tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_input(folder / "train.jsonl", texts)
    source = HubSource(str(folder))
    assert len(source) == N and list(source) == texts
    out = encode_file(tiny_model, folder, tmp_path / "out.parquet", batch_size=8,
                      chunk_size=CHUNK, shard="1/2", show_progress=False)
    got, ids = read_output(out)
    np.testing.assert_allclose(got, expected[N // 2:], atol=1e-6)
    assert ids.tolist() == list(range(N // 2, N))
    with pytest.raises(ValueError, match=r"no column 'question' \(columns: \['id', 'text'\]\)"):
        HubSource(str(folder), column="question")
    with pytest.raises(ValueError, match="cannot stream split 'test'"):
        encode_file(tiny_model, folder, tmp_path / "o.npy", split="test")


def test_an_input_that_shrinks_during_the_run_is_an_error(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line {i} " + "x" * 40 + "\n" for i in range(5000)))

    class Truncating(ZeroModel):
        def encode(self, texts, **kwargs):
            source.write_text("")
            return super().encode(texts, **kwargs)

    with pytest.raises(ValueError, match="ended after .* rows, 5000 expected: did it change"):
        encode_file(Truncating(), source, tmp_path / "out.npy", chunk_size=100,
                    show_progress=False)
    assert not (tmp_path / "out.npy").exists()


def test_a_broken_or_orphaned_progress_file(tiny_model, texts, tmp_path, monkeypatch, caplog):
    source = write_input(tmp_path / "in.txt", texts[:10])
    out, progress = tmp_path / "out.npy", tmp_path / "out.npy.progress.json"
    progress.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable progress file"):
        encode_file(tiny_model, source, out, chunk_size=3, show_progress=False)
    encode_file(tiny_model, source, out, chunk_size=3, show_progress=False, overwrite=True)
    expected = out.read_bytes()
    out.unlink()
    with monkeypatch.context() as patch:
        counting_encode(patch, tiny_model, fail_on=3)
        with pytest.raises(Interrupt):
            encode_file(tiny_model, source, out, chunk_size=3, show_progress=False)
    (tmp_path / "out.npy.partial").unlink()  # progress recorded, partial file lost
    with monkeypatch.context() as patch:
        calls = counting_encode(patch, tiny_model)
        encode_file(tiny_model, source, out, chunk_size=3, show_progress=False)
    assert len(calls) == 4 and "partial output" in caplog.text
    assert out.read_bytes() == expected and not progress.exists()
