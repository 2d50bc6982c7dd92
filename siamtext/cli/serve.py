"""``siamtext serve MODEL``: embeddings, duplicate checks and intents over HTTP (uvicorn)."""

from __future__ import annotations

import argparse

from siamtext.cli.backend import add_backend_options, model_kwargs


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve", help="serve embeddings, duplicate checks and intents over HTTP",
        description="Serve MODEL over HTTP: /v1/embeddings (OpenAI-compatible), /embed and "
                    "/similarity (TEI-compatible), /duplicates over --index, /intents over "
                    "--intents, /health, /ready, /info, /metrics and a page at /. Needs "
                    "pip install 'siamtext[serve]'.",
    )
    parser.add_argument("model", help="model folder or Hub id")
    parser.add_argument("--index", default=None, metavar="PATH",
                        help="collection folder for the /duplicates routes (created if missing)")
    parser.add_argument("--intents", default=None, metavar="PATH",
                        help="the /intents routes: a folder written by IntentClassifier.save "
                             "(rewritten after each change), or a collection of examples (a "
                             "k-NN classifier, each change a durable increment; created when "
                             "missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    add_backend_options(parser)
    parser.add_argument("--max-batch-tokens", type=int, default=16384,
                        help="token budget of one merged batch (default 16384)")
    parser.add_argument("--max-batch-requests", type=int, default=64,
                        help="most requests merged into one batch (default 64)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0,
                        help="how long a batch waits for requests on their way (default 2)")
    parser.add_argument("--max-queue", type=int, default=1024,
                        help="most requests waiting; one more gets 429 (default 1024)")
    parser.add_argument("--max-texts", type=int, default=256, help="texts per request (413)")
    parser.add_argument("--max-chars", type=int, default=20_000, help="characters per text (422)")
    parser.add_argument("--max-body-bytes", type=int, default=2 * 1024 * 1024,
                        help="largest request body (413)")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="duplicate threshold when a request gives none (default 0.9)")
    parser.add_argument("--api-key-file", default=None, metavar="PATH",
                        help="keys, one a line: 'read KEY', 'write KEY' or 'KEY' (write)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow this origin by CORS (repeat; default: CORS off)")
    parser.add_argument("--model-name", default=None, help="the name /v1/embeddings answers")
    parser.add_argument("--insecure", action="store_true",
                        help="allow write routes on a non-loopback --host without a key")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"])
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.extras import require
    from siamtext.serve.security import check_bind
    from siamtext.serve.settings import ServeSettings
    from siamtext.validation import check_positive_int

    check_positive_int(args.port, "--port")
    settings = ServeSettings(
        max_batch_tokens=args.max_batch_tokens, max_batch_requests=args.max_batch_requests,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_texts=args.max_texts,
        max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
        duplicate_threshold=args.threshold, api_keys=args.api_key_file,
        cors_origins=args.cors_origin, model_name=args.model_name)
    check_bind(args.host, has_keys=args.api_key_file is not None,
               writes=args.index is not None or args.intents is not None,
               insecure=args.insecure)
    kwargs = model_kwargs(args)  # fails on a bad --file-name before anything loads
    require("uvicorn", "serve", "siamtext serve")
    from siamtext.serve import create_app
    from siamtext.serve.server import serve

    def load():
        from siamtext.model import SiamText

        return SiamText(args.model, **kwargs)

    app = create_app(load, index=args.index, intents=args.intents, settings=settings)
    return serve(app, host=args.host, port=args.port, log_level=args.log_level)
