"""Serve a pipeline over HTTP: POST /v1/ents, a page at /, /healthz, /readyz, /metrics (spacy_bert_crf.lab.serving)."""

import typer
from wasabi import msg

from spacy_bert_crf.lab.serving import ServeSettings, pipeline_path, serve

DEFAULTS = ServeSettings()


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8080, "--port"),
    max_batch_texts: int = typer.Option(
        DEFAULTS.max_batch_texts, "--max-batch-texts", help="Texts per nlp.pipe call (1: no micro-batching)"
    ),
    max_batch_chars: int = typer.Option(DEFAULTS.max_batch_chars, "--max-batch-chars", help="Characters per batch"),
    max_wait_ms: float = typer.Option(
        DEFAULTS.max_wait_ms, "--max-wait-ms", help="How long a batch's first request waits for others"
    ),
    max_body_bytes: int = typer.Option(DEFAULTS.max_body_bytes, "--max-body-bytes", help="Larger bodies get 413"),
    max_text_chars: int = typer.Option(DEFAULTS.max_text_chars, "--max-text-chars", help="Longer texts get 413"),
    max_texts: int = typer.Option(DEFAULTS.max_texts, "--max-texts", help="More texts in one request get 413"),
    max_queued_texts: int = typer.Option(
        DEFAULTS.max_queued_texts, "--max-queued-texts", help="Beyond this many waiting texts, requests get 503"
    ),
    request_timeout_s: float = typer.Option(
        DEFAULTS.request_timeout_s, "--request-timeout-s", help="Requests not answered by then get 504"
    ),
    workers: int = typer.Option(DEFAULTS.workers, "--workers", help="Processes with the model, one batch each"),
    threads_per_worker: int = typer.Option(
        DEFAULTS.threads_per_worker, "--threads-per-worker", help="torch threads per worker (0: cores ÷ workers)"
    ),
    quantize: bool = typer.Option(False, "--quantize", help="int8 encoder for CPU inference (the pipe's quantize)"),
):
    """Serve MODEL until interrupted; the page is at http://HOST:PORT/ and the API's schema at /docs."""
    try:
        pipeline_path(model)
        settings = ServeSettings(
            max_batch_texts=max_batch_texts,
            max_batch_chars=max_batch_chars,
            max_wait_ms=max_wait_ms,
            max_body_bytes=max_body_bytes,
            max_text_chars=max_text_chars,
            max_texts=max_texts,
            max_queued_texts=max_queued_texts,
            request_timeout_s=request_timeout_s,
            workers=workers,
            threads_per_worker=threads_per_worker,
        )
    except (OSError, ValueError) as error:
        msg.fail(str(error), exits=1)
    msg.info(f"Serving {model} at http://{host}:{port}/ (ready once /readyz says so)")
    serve(model, host, port, settings, quantize=quantize)


if __name__ == "__main__":
    typer.run(main)
