"""serve: the trained model over HTTP, scoring rows exactly as `stages predict` does.

A Starlette application under uvicorn. It speaks MLflow's scoring protocol
(`/invocations`, `/ping`, `/health`, `/version`) and the Open Inference Protocol v2
(`/v2/...`, for KServe, Triton and MLServer clients); the bodies are read and written by
stages/tools/protocols.py. Every request's rows go through the same `Predictor` as
`stages predict` (stages/model/predictor.py): the same cleaning, validation, encoding,
unseen-category warnings and decision threshold.

What production expects: the model loads in the background and readiness answers 503
until it has; errors are JSON with their status; the body is limited to
`serve.max_body_mb`; with SERVE_TOKEN in the environment every route but liveness needs
`Authorization: Bearer <token>` (compared in constant time, never logged); scoring runs in
worker threads, at most one per core at a time, off the event loop; `/metrics` gives
Prometheus counters and latencies, `/drift` the rolling drift of the served rows against
the train split; SIGTERM lets the requests in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import os
import signal
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import orjson
import pandas as pd
import prometheus_client as prom
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stages.common import paths
from stages.common.config import Params
from stages.common.errors import PipelineError
from stages.common.io import file_sha256, read_json, say
from stages.data.drift import RollingDrift
from stages.model.predictor import Predictor, invalid_rows
from stages.tools.protocols import (
    RequestError,
    input_datatype,
    mlflow_rows,
    oip_outputs,
    oip_rows,
    output_datatype,
    parse_json,
    records,
)

LOG = logging.getLogger("stages.serve")
prom.disable_created_metrics()  # the *_created series say nothing a scrape needs
TOKEN_VARIABLE = "SERVE_TOKEN"
PARAMS_VARIABLE = "STAGES_SERVE_PARAMS"  # the params, as JSON, for each worker process
OPEN_PATHS = frozenset({"/v2/health/live"})  # liveness answers without the token
# Rows of waiting requests scored in one call at most: past this, a larger call gains
# little (Adult: 27,000 rows/s in calls of 1,000 rows, 62,000 of 4,000, 74,000 of 8,000).
BATCH_ROWS = 8_192
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "stages_serve_requests",
            "Requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.errors = prom.Counter(
            "stages_serve_errors",
            "Requests answered with an error status, by status.",
            ["status"],
            registry=self.registry,
        )
        self.rows = prom.Counter(
            "stages_serve_rows",
            "Rows scored, by result (predicted or invalid).",
            ["result"],
            registry=self.registry,
        )
        self.latency = prom.Histogram(
            "stages_serve_request_seconds",
            "Time to answer a request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.drift = prom.Counter(
            "stages_serve_drift_warnings",
            "Times a column's PSI over the rolling window passed predict.drift_threshold.",
            ["column"],
            registry=self.registry,
        )


class Service:
    """The loaded model and what the routes share: the predictor (None until loaded), the
    drift window, the metrics and the batcher that scores requests one batch at a time."""

    def __init__(self, params: Params, *, token: str | None) -> None:
        self.params = params
        self.token = token
        self.predictor: Predictor | None = None
        self.load_error: str | None = None
        self.drift: RollingDrift | None = None
        self.drift_lock = threading.Lock()
        self.metrics = Metrics()
        self.batcher: Batcher | None = None
        self.model_sha256 = ""

    def load(self) -> None:
        """Load the predictor and the train profile; warm the network up with one row.

        Matrix products run on one thread: the cores are used by worker processes, and
        BLAS threads spinning beside them cost more than they give (on 2 cores, 1,000-row
        requests: 28 ms of CPU per 1,000 rows against 59)."""
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        try:
            predictor = Predictor.load(self.params)
            predictor.warm_up()
            profile = Path(paths.PROFILE)
            if profile.is_file():
                self.drift = RollingDrift(read_json(profile), window=self.params.serve.drift_window)
            self.model_sha256 = file_sha256(Path(paths.NETWORK))
            self.predictor = predictor
            say("serve", f"model loaded: {paths.NETWORK} ({self.model_sha256[:12]}), ready")
        except PipelineError as exc:
            self.load_error = str(exc)
            say("serve", f"error: the model cannot be loaded: {exc}")
        except Exception as exc:  # the process stays up and says why it is not ready
            self.load_error = f"{type(exc).__name__}: {exc}"
            say("serve", f"error: the model cannot be loaded: {self.load_error}")

    def ready(self) -> Predictor:
        if self.predictor is None:
            reason = self.load_error or "the model is still loading"
            raise RequestError(503, f"not ready: {reason}")
        return self.predictor

    def score(self, requests: list[pd.DataFrame]) -> list[pd.DataFrame | RequestError]:
        """Score the rows of several requests (in a worker thread), together where their
        columns are the same: one pass of the predictor for all of them, its fixed costs
        shared. Each request gets its own table, or the error it alone would get."""
        predictor = self.ready()
        answers: list[pd.DataFrame | RequestError] = [RequestError(500, "not scored")] * len(
            requests
        )
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, rows in enumerate(requests):
            groups.setdefault(tuple(sorted(map(str, rows.columns))), []).append(index)
        for members in groups.values():
            frames = [requests[index] for index in members]
            try:
                tables = self._predict_together(predictor, frames)
            except PipelineError:  # one request's fault: each alone, so only it fails
                tables = [self._predict_alone(predictor, frame) for frame in frames]
            for index, table in zip(members, tables, strict=True):
                answers[index] = self._checked(table)
        return answers

    def _predict_together(self, predictor: Predictor, frames: list[pd.DataFrame]) -> list:
        if len(frames) == 1:
            predictions = predictor.predict(frames[0])
        else:
            predictions = predictor.predict(pd.concat(frames, ignore_index=True))
        self._count(predictions)
        bounds = np.cumsum([0, *map(len, frames)])
        return [
            predictions.table.iloc[start:end].reset_index(drop=True)
            for start, end in itertools.pairwise(bounds)
        ]

    def _predict_alone(self, predictor: Predictor, frame: pd.DataFrame):
        try:
            predictions = predictor.predict(frame)
        except PipelineError as exc:
            return RequestError(400, "; ".join([exc.message, *exc.details]))
        self._count(predictions)
        return predictions.table

    def _checked(self, table):
        """A request's table, or its error under predict.on_invalid fail."""
        if isinstance(table, RequestError):
            return table
        reasons = invalid_rows(table)
        if reasons and self.params.predict.on_invalid == "fail":
            return RequestError(
                400,
                f"{len(reasons)} invalid row(s) and predict.on_invalid is fail: "
                + "; ".join(reasons),
            )
        return table

    def _count(self, predictions) -> None:
        """The rows scored, in the metrics and the drift window."""
        table = predictions.table
        invalid = int(table["error"].notna().sum())
        self.metrics.rows.labels("predicted").inc(len(table) - invalid)
        self.metrics.rows.labels("invalid").inc(invalid)
        if self.drift is not None:
            with self.drift_lock:
                closed = self.drift.add(predictions.encoded, predictions.unseen)
                summary = self.drift_summary() if closed else None
            if summary is not None:
                self._log_drift(summary)

    def drift_summary(self) -> dict[str, Any]:
        assert self.drift is not None
        return self.drift.summary(threshold=self.params.predict.drift_threshold)

    def _log_drift(self, summary: dict[str, Any]) -> None:
        threshold = summary["threshold"]
        for name in summary["drifted"]:
            self.metrics.drift.labels(name).inc()
            say(
                "serve",
                f"warning: column '{name}' drifted from the train split over the latest "
                f"{summary['rows']:,} rows (PSI {summary['columns'][name]['psi']:.3f} > "
                f"predict.drift_threshold {threshold})",
            )

    async def scored(self, rows: pd.DataFrame) -> pd.DataFrame:
        """A request's predictions, scored with those of the requests waiting beside it."""
        self.ready()
        assert self.batcher is not None
        answer = await self.batcher.submit(rows)
        if isinstance(answer, RequestError):
            raise answer
        return answer


class Batcher:
    """Requests wait in one queue; one loop takes the first waiting request and every other
    one waiting then, up to `max_rows` rows, and scores them in one call in a worker
    thread. A lone request is scored at once; under load the predictor's fixed costs
    (validation above all) are shared by several requests.

    One batch at a time per process: scoring holds Python's lock most of its time, so a
    second loop in the same process mostly waits for it and shrinks the batches (on 2 cores,
    16 clients of one row each: p50 89 ms with two loops, 55 ms with one). The cores are
    used by worker processes (`serve.workers`)."""

    def __init__(self, score, *, max_rows: int) -> None:
        self.score = score
        self.max_rows = max_rows
        self.queue: asyncio.Queue = asyncio.Queue()

    async def submit(self, rows: pd.DataFrame):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            taken = len(batch[0][0])
            while taken < self.max_rows and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                taken += len(batch[-1][0])
            try:
                answers = await anyio.to_thread.run_sync(self.score, [rows for rows, _ in batch])
            except Exception as exc:  # a bug: every request of the batch answers 500
                LOG.exception("error scoring a batch")
                answers = [RequestError(500, f"internal error: {type(exc).__name__}")] * len(batch)
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)


def _error_body(path: str, status: int, message: str) -> dict[str, Any]:
    """An error as each protocol's clients read it: MLflow's error_code and message, the
    Open Inference Protocol's error."""
    if path.startswith("/v2"):
        return {"error": message}
    codes = {
        401: "UNAUTHENTICATED",
        404: "RESOURCE_DOES_NOT_EXIST",
        413: "REQUEST_LIMIT_EXCEEDED",
        503: "TEMPORARILY_UNAVAILABLE",
    }
    code = codes.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return {"error_code": code, "message": message}


def _json(body: Any, status: int = 200) -> Response:
    """A JSON answer. orjson writes a 1,000-row answer in a tenth of json's time."""
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


async def _body(request: Request, limit_mb: float) -> bytes:
    """The request body, refused with 413 past `limit_mb` (before reading it when the
    Content-Length says so)."""
    limit = int(limit_mb * 1024 * 1024)
    too_large = RequestError(413, f"the body is over serve.max_body_mb ({limit_mb:g} MB)")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


class _Routes:
    """The handlers, each reading what it needs from the service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.params = service.params
        self.name = service.params.serve.model_name

    def routes(self) -> list[Route]:
        get, post = ["GET"], ["POST"]
        return [
            Route("/ping", self.ping, methods=get),
            Route("/health", self.ping, methods=get),
            Route("/version", self.version, methods=get),
            Route("/invocations", self.invocations, methods=post),
            Route("/metrics", self.metrics, methods=get),
            Route("/drift", self.drift, methods=get),
            Route("/v2", self.server_metadata, methods=get),
            Route("/v2/health/live", self.live, methods=get),
            Route("/v2/health/ready", self.server_ready, methods=get),
            Route("/v2/models/{model}", self.model_metadata, methods=get),
            Route("/v2/models/{model}/ready", self.model_ready, methods=get),
            Route("/v2/models/{model}/infer", self.infer, methods=post),
        ]

    async def ping(self, request: Request) -> Response:
        self.service.ready()
        return _json({"status": "ok"})

    async def version(self, request: Request) -> Response:
        self.service.ready()
        return _json(_versions(self.service))

    async def invocations(self, request: Request) -> Response:
        predictor = self.service.ready()
        body = await _body(request, self.params.serve.max_body_mb)
        columns = [column for column in predictor.columns if column != predictor.spec.target]
        rows = mlflow_rows(body, request.headers.get("content-type"), columns=columns)
        table = await self.service.scored(rows)
        return _json({"predictions": records(table)})

    async def metrics(self, request: Request) -> Response:
        registry = self.service.metrics.registry
        return Response(prom.generate_latest(registry), media_type=prom.CONTENT_TYPE_LATEST)

    async def drift(self, request: Request) -> Response:
        self.service.ready()
        if self.service.drift is None:
            raise RequestError(404, f"no train profile ({paths.PROFILE}): run `dvc repro`")
        with self.service.drift_lock:
            summary = self.service.drift_summary()
        return _json(summary)

    async def server_metadata(self, request: Request) -> Response:
        version = _versions(self.service)["version"]
        return _json({"name": "stages", "version": version, "extensions": []})

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def server_ready(self, request: Request) -> Response:
        self.service.ready()
        return _json({"ready": True})

    def _model(self, request: Request) -> Predictor:
        asked = request.path_params["model"]
        if asked != self.name:
            raise RequestError(404, f"unknown model '{asked}': this server serves '{self.name}'")
        return self.service.ready()

    async def model_metadata(self, request: Request) -> Response:
        return _json(_model_metadata(self._model(request), self.name, self.service))

    async def model_ready(self, request: Request) -> Response:
        self._model(request)
        return _json({"name": self.name, "ready": True})

    async def infer(self, request: Request) -> Response:
        self._model(request)
        body = await _body(request, self.params.serve.max_body_mb)
        payload = parse_json(body)
        rows, wanted = oip_rows(payload)
        table = await self.service.scored(rows)
        answer: dict[str, Any] = {"model_name": self.name, "outputs": oip_outputs(table, wanted)}
        if isinstance(payload.get("id"), str):
            answer["id"] = payload["id"]
        return _json(answer)


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405, as JSON."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    message = f"{request.method} {request.url.path}: {exc.detail}"
    response = JSONResponse(_error_body(request.url.path, status, message), status)
    if status == 405 and exc.headers:
        response.headers.update(exc.headers)
    return response


def create_app(params: Params, *, token: str | None = None) -> Starlette:
    """The application; the model loads in a background thread once it starts."""
    service = Service(params, token=token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        threading.Thread(target=service.load, name="load-model", daemon=True).start()
        batcher = Batcher(service.score, max_rows=BATCH_ROWS)
        loop = asyncio.create_task(batcher.run())
        service.batcher = batcher
        yield
        loop.cancel()

    app = Starlette(
        routes=_Routes(service).routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.add_middleware(_Guard, service=service)
    app.state.service = service
    return app


class _Guard:
    """ASGI middleware around every request: the token, errors as JSON, and the metrics."""

    def __init__(self, app, *, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        status = {"code": 500}

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            self._check_token(scope)
            await self.app(scope, receive, counted)
        except RequestError as exc:
            await self._error(path, exc.status, exc.message, counted)
        except Exception as exc:
            # A bug answers 500, and is logged with its traceback on the server only.
            LOG.exception("error answering %s", path)
            await self._error(path, 500, f"internal error: {type(exc).__name__}", counted)
        finally:
            route = _route_label(path)
            code = status["code"]
            metrics = self.service.metrics
            metrics.requests.labels(route, str(code)).inc()
            if code >= 400:
                metrics.errors.labels(str(code)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - start)

    def _check_token(self, scope) -> None:
        token = self.service.token
        if not token or scope["path"] in OPEN_PATHS:
            return
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise RequestError(401, f"this server needs Authorization: Bearer <{TOKEN_VARIABLE}>")

    async def _error(self, path: str, status: int, message: str, send) -> None:
        response = JSONResponse(_error_body(path, status, message), status_code=status)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        await response({"type": "http"}, None, send)


def _route_label(path: str) -> str:
    """The path as a metrics label: a model's name replaced, unknown paths pooled."""
    parts = path.split("/")
    if path.startswith("/v2/models/") and len(parts) >= 4:
        parts[3] = "{model}"
        path = "/".join(parts)
    known = {
        "/ping", "/health", "/version", "/invocations", "/metrics", "/drift", "/v2",
        "/v2/health/live", "/v2/health/ready", "/v2/models/{model}",
        "/v2/models/{model}/ready", "/v2/models/{model}/infer",
    }  # fmt: skip
    return path if path in known else "other"


def _versions(service: Service) -> dict[str, Any]:
    import keras

    try:
        version = metadata.version("stages")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "version": version,
        "model": paths.NETWORK,
        "model_sha256": service.model_sha256,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
    }


def _model_metadata(predictor: Predictor, name: str, service: Service) -> dict[str, Any]:
    """The model's Open Inference Protocol metadata: one input per raw column (the
    target's excepted), one output per column of the predictions."""
    inputs = [
        {"name": column, "datatype": input_datatype(declared.dtype.type), "shape": [-1]}
        for column, declared in predictor.schema.columns.items()
    ]
    example = predictor.empty_predictions()
    outputs = [
        {"name": column, "datatype": output_datatype(example[column]), "shape": [-1]}
        for column in example.columns
    ]
    return {
        "name": name,
        "versions": [service.model_sha256[:12]],
        "platform": f"keras_{_versions(service)['keras_backend']}",
        "inputs": inputs,
        "outputs": outputs,
    }


def app_from_environment() -> Starlette:
    """The application of one worker process (`serve.workers` > 1): its params come from
    the parent in STAGES_SERVE_PARAMS."""
    params = Params.model_validate(json.loads(os.environ[PARAMS_VARIABLE]))
    return create_app(params, token=os.environ.get(TOKEN_VARIABLE) or None)


def run(params: Params) -> None:
    """The serve command: listen until SIGTERM or Ctrl-C, then let requests finish."""
    serve = params.serve
    token = os.environ.get(TOKEN_VARIABLE) or None
    if serve.host not in ("127.0.0.1", "localhost", "::1") and not token:
        say(
            "serve",
            f"warning: listening on {serve.host} without {TOKEN_VARIABLE}: anyone who can "
            "reach this port can call the model",
        )
    say(
        "serve",
        f"listening on http://{serve.host}:{serve.port} ({serve.workers} worker(s); "
        f"token {'required' if token else 'not set'})",
    )
    options: dict[str, Any] = {
        "host": serve.host,
        "port": serve.port,
        "log_level": "warning",
        "timeout_graceful_shutdown": None,
    }
    # uvicorn stops on SIGTERM or SIGINT once the requests in flight are answered, then
    # raises the signal again for the handler it found: this one lets the command end
    # normally (exit 0) instead of dying of the signal.
    stopped = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.SIG_DFL}
    for number in stopped:
        stopped[number] = signal.signal(number, lambda *_: None)
    try:
        if serve.workers > 1:
            os.environ[PARAMS_VARIABLE] = params.model_dump_json(by_alias=True)
            uvicorn.run(
                "stages.tools.serve:app_from_environment",
                factory=True,
                workers=serve.workers,
                **options,
            )
        else:
            uvicorn.run(create_app(params, token=token), **options)
    finally:
        for number, handler in stopped.items():
            signal.signal(number, handler)
    say("serve", "stopped")
