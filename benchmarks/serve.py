"""Benchmark of `stages serve`: a real server process called by a real HTTP client.

    python benchmarks/serve.py            # in a trained project (after `dvc repro`)
    python benchmarks/serve.py --quick    # fewer requests

Measures, on Adult rows of the shipped table:
1. single-row latency (MLflow `/invocations`, one record per request), p50 and p99, with
   1 and with 16 concurrent clients (each its own keep-alive connection);
2. rows per second on 1,000-row requests, with 1 and with 8 concurrent clients, and the
   server's CPU milliseconds per 1,000 rows;
   both with 1 and with 2 server processes (--workers);
3. one server process's resident memory after 100 and after 10,000 single-row requests.

Results print as a table and are written as JSON (--out, benchmarks/serve.json).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python -m stages serve` in `repo` on a free localhost port, with a small client.

    As a context manager it starts the server, waits until it is ready (unless `wait` is
    False) and stops it (SIGTERM) on leaving."""

    def __init__(
        self,
        repo: Path,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        wait: bool = True,
    ) -> None:
        self.repo = Path(repo)
        self.port = free_port()
        self.token = (env or {}).get("SERVE_TOKEN")
        self.extra_env = env or {}
        self.args = args or []
        self.wait = wait
        self.logs = tempfile.TemporaryDirectory(prefix="serve-")  # not in the project
        self.output = Path(self.logs.name) / "server.log"
        self.final_log: str | None = None
        self.local = threading.local()

    def __enter__(self) -> Server:
        environment = {**os.environ, **self.extra_env}
        environment.pop("KERAS_BACKEND", None)
        if "SERVE_TOKEN" not in self.extra_env:
            environment.pop("SERVE_TOKEN", None)
        self.log_file = self.output.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stages", "serve", "--port", str(self.port), *self.args],
            cwd=self.repo,
            env=environment,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        if self.wait:
            try:
                self.wait_ready()
            except BaseException:
                self.__exit__(None, None, None)  # no server left behind
                raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log_file.close()
        self.final_log = self.output.read_text()
        self.logs.cleanup()

    def log(self) -> str:
        """What the server printed (so far, while it runs)."""
        return self.final_log if self.final_log is not None else self.output.read_text()

    def _poll(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log()}")
            try:
                if self.get(path, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{path} never answered 200:\n{self.log()}")

    def wait_ready(self, timeout: float = 120) -> None:
        self._poll("/v2/health/ready", timeout)

    def wait_live(self, timeout: float = 60) -> None:
        self._poll("/v2/health/live", timeout)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        """This thread's keep-alive connection."""
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            self.local.connection = connection
        connection.timeout = timeout
        return connection

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, bytes]:
        for attempt in range(2):  # a kept-alive connection the server closed: once more
            connection = self._connection(timeout)
            try:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self.local.connection = None
                closed = isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError)
                if attempt or not closed:
                    raise
        raise AssertionError("unreachable")

    def _headers(self, token: str | bool | None, content_type: str | None) -> dict[str, str]:
        headers = {}
        token = self.token if token is True else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    @staticmethod
    def _decoded(status: int, data: bytes) -> tuple[int, Any]:
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data.decode("utf-8", "replace")

    def get(self, path: str, *, token: str | bool | None = True, timeout: float = 60):
        return self._decoded(*self.request("GET", path, None, self._headers(token, None), timeout))

    def post(
        self,
        path: str,
        payload: Any,
        *,
        content_type: str = "application/json",
        token: str | bool | None = True,
        timeout: float = 60,
    ):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = self._headers(token, content_type)
        return self._decoded(*self.request("POST", path, body, headers, timeout))

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples of /metrics: 'name{labels}' -> value."""
        status, text = self.request("GET", "/metrics", None, self._headers(True, None))
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}: {text[:200]!r}")
        samples = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def cpu_seconds(self) -> float:
        """CPU time (user and system) of the server process and its worker processes
        (Linux): what serving cost, whatever else runs on the machine."""
        ticks = os.sysconf("SC_CLK_TCK")
        pids, total = {self.process.pid}, 0.0
        for stat in sorted(Path("/proc").glob("[0-9]*/stat")):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # a process that ended meanwhile
                continue
            pid, parent = int(stat.parent.name), int(fields[1])
            if pid in pids or parent in pids:
                pids.add(pid)
                total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def resident_mb(self) -> float:
        """The server process's resident memory (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


def _records(rows: int) -> list[dict]:
    import pandas as pd

    table = pd.read_parquet(REPO / "data/raw/table.parquet").drop(columns=["income"])
    return json.loads(table.iloc[:rows].to_json(orient="records"))


def latencies(server: Server, rows: list[dict], *, clients: int, requests: int) -> list[float]:
    """Seconds per single-row request, `clients` at a time."""
    bodies = [json.dumps({"dataframe_records": [row]}).encode() for row in rows]
    headers = {"Content-Type": "application/json"}

    def one(index: int) -> float:
        start = time.perf_counter()
        status, _ = server.request("POST", "/invocations", bodies[index % len(bodies)], headers)
        assert status == 200, status
        return time.perf_counter() - start

    for index in range(50):  # warm each path up
        one(index)
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(requests)))


def throughput(
    server: Server, rows: list[dict], *, batch: int, requests: int, clients: int
) -> tuple[float, float]:
    """Rows per second on `batch`-row requests, `clients` at a time, and the server's CPU
    milliseconds per 1,000 rows."""
    bodies = [
        json.dumps({"dataframe_records": rows[start : start + batch]}).encode()
        for start in range(0, len(rows) - batch + 1, batch)
    ]
    headers = {"Content-Type": "application/json"}

    def one(index: int) -> None:
        status, _ = server.request("POST", "/invocations", bodies[index % len(bodies)], headers)
        assert status == 200, status

    for index in range(4):
        one(index)
    start, cpu = time.perf_counter(), server.cpu_seconds()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    seconds, cpu = time.perf_counter() - start, server.cpu_seconds() - cpu
    return requests * batch / seconds, 1e6 * cpu / (requests * batch)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--out", default=str(REPO / "benchmarks/serve.json"))
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="server processes, each in turn"
    )
    args = parser.parse_args()
    single = 300 if args.quick else 3000
    rows = _records(10_000)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "single_row": [],
        "rows_per_second_1000_row_requests": [],
    }
    for workers in args.workers:
        with Server(REPO, args=["--workers", str(workers)]) as server:
            for clients in (1, 16):
                seconds = latencies(server, rows, clients=clients, requests=single)
                results["single_row"].append(
                    {
                        "workers": workers,
                        "clients": clients,
                        "requests": single,
                        "p50_ms": round(1000 * statistics.median(seconds), 2),
                        "p99_ms": round(1000 * percentile(seconds, 0.99), 2),
                    }
                )
            for clients in (1, 8):
                speed, cpu = throughput(
                    server, rows, batch=1000, requests=24 if args.quick else 160, clients=clients
                )
                results["rows_per_second_1000_row_requests"].append(
                    {
                        "workers": workers,
                        "clients": clients,
                        "rows_per_second": round(speed),
                        "server_cpu_ms_per_1000_rows": round(cpu, 1),
                    }
                )
    with Server(REPO) as server:  # a fresh process, for its memory alone
        latencies(server, rows, clients=1, requests=50)  # 100 requests with the warm-up
        after_100 = server.resident_mb()
        latencies(server, rows, clients=1, requests=1000 if args.quick else 9900)
        after_all = server.resident_mb()
        results["resident_mb"] = {
            "after_100_requests": round(after_100, 1),
            f"after_{1050 if args.quick else 10_000}_requests": round(after_all, 1),
            "growth": round(after_all / after_100 - 1, 4),
        }
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
