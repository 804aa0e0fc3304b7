"""Benchmark: the plugin under 16 concurrent dashboard clients, through real TensorBoard servers.

Three runs of 200 steps x 256 probes x 100 features (20 MB of float32 attributions each) are written with
`tb_xai.summary`. For each loader (`--load_fast=true`, `false`) a server is started; once the runs are loaded,
16 client threads each send a dashboard's mix of requests (evolution for all probes and for one class, signed,
probe, stability, agreement, runs) over the three runs, and every request's wall time is recorded. Printed:
p50 / p95 / max latency under that load (every view but the probe's has been read once per run and method
before, one request at a time: the slowest of those first, uncached answers is printed apart, as "first s",
and the slowest per view below the table), and the gzipped size of an evolution answer. With ``--cold`` the
views are not read before: the load meets every first answer, as a dashboard opened on fresh runs does (the
slowest answer per view under that load is printed below the table). "cpu s": the server's CPU time over the load.
Target (issue 15): p95 <= 0.5 s.

Run: ``python bench/bench_plugin.py [--requests 12] [--clients 16] [--cold]``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import sys
import tempfile
import threading
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the event writer may import TensorFlow
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from tb_xai import summary  # noqa: E402
from tensorboard_server import ROUTE, Server  # noqa: E402

STEPS, PROBES, FEATURES = 200, 256, 100
RUNS = [f"bench{i}/xai" for i in range(3)]
METHODS = ("integrated_gradients", "saliency")
QUERIES = (
    "evolution?run={run}&method={method}",
    "evolution?run={run}&method={method}&signed=1&target=1",
    "probe?run={run}&method={method}&probe={probe}",
    "stability?run={run}&method={method}&k=10",
    "agreement?run={run}&k=10",
    "runs",
)


def write_run(logdir: str, run: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = [f"feature_{i}" for i in range(FEATURES)]
    writer = summary.SummaryWriter(os.path.join(logdir, run))
    writer.write(summary.probe_pb("x", rng.normal(size=(PROBES, FEATURES)), feature_names=names, modality="tabular"), 0)
    for step in range(STEPS):
        items = [summary.predictions_pb(rng.random((PROBES, 2))), summary.targets_pb(rng.integers(0, 2, PROBES))]
        items += [summary.attribution_pb(method, "x", rng.normal(size=(PROBES, FEATURES)).astype(np.float32),
                                         feature_names=names, modality="tabular") for method in METHODS]
        for item in items:
            writer.write(item, step)
    writer.close()


def get(server: Server, path: str) -> bytes:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=300)
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {body[:200]!r}")
        return body
    finally:
        connection.close()


def cpu_seconds(server: Server) -> float:
    """The server process's CPU time so far (user + system), from /proc."""
    with open(f"/proc/{server.process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def under_load(server: Server, clients: int, requests: int, seed: int) -> list:
    """``(view, wall time)`` of every request, `clients` threads each sending `requests` requests at once."""
    times, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        start.wait()
        for _ in range(requests):
            query = rng.choice(QUERIES)
            path = ROUTE + query.format(run=rng.choice(RUNS), method=rng.choice(METHODS), probe=rng.randrange(PROBES))
            t0 = time.perf_counter()
            try:
                get(server, path)
            except Exception as error:  # noqa: BLE001 - reported after the run
                errors.append(error)
            with lock:
                times.append((view_of(query), time.perf_counter() - t0))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return times


def view_of(query: str) -> str:
    return query.split("?")[0] + (" signed" if "signed" in query else "")


def measure(logdir: str, load_fast: str, clients: int, requests: int, cold: bool = False) -> dict:
    with Server(logdir, load_fast, tensorflow=True) as server:  # TensorBoard as users run it, TensorFlow imported
        started = time.time()
        server.wait_for({run: STEPS for run in RUNS}, timeout=600)
        load_s = time.time() - started
        first, views = {}, {}
        for query in () if cold else QUERIES[:2] + QUERIES[3:5]:  # each view's first, uncached answer (the
            for run in RUNS:                                      # stability view's noise floor, above all)
                for method in METHODS:
                    path = ROUTE + query.format(run=run, method=method, probe=0)
                    if path not in first:
                        t0 = time.perf_counter()
                        get(server, path)
                        first[path] = time.perf_counter() - t0
                        view = view_of(query)
                        views[view] = max(views.get(view, 0.0), first[path])
        body = get(server, ROUTE + f"evolution?run={RUNS[0]}&method=integrated_gradients") if not cold else None
        answer = server.json(ROUTE + f"evolution?run={RUNS[0]}&method=integrated_gradients")
        if len(answer["steps"]) != STEPS or len(answer["importance"][0]) != FEATURES:
            raise RuntimeError("evolution answer does not hold every step and feature")
        cpu = cpu_seconds(server)
        answered = under_load(server, clients, requests, seed=1)
        cpu = cpu_seconds(server) - cpu
        times = np.array([t for _, t in answered])
        if cold:  # the slowest answer of each view under the load, where it met its first answers
            views = {v: max(t for w, t in answered if w == v) for v in sorted({w for w, _ in answered})}
        if cold:  # read after the load, so that the load met the first answer
            body = get(server, ROUTE + f"evolution?run={RUNS[0]}&method=integrated_gradients")
        return {
            "load_s": load_s, "first_s": max(first.values(), default=float("nan")), "views": views, "cpu_s": cpu,
            "p50": float(np.percentile(times, 50)),
            "p95": float(np.percentile(times, 95)), "max": float(times.max()), "n": times.size,
            "gzip_bytes": len(body),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=12, help="requests per client")
    parser.add_argument("--cold", action="store_true", help="no view read before the load: it meets the first answers")
    parser.add_argument("--load_fast", choices=("true", "false", "both"), default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logdir:
        t0 = time.time()
        for seed, run in enumerate(RUNS):
            write_run(logdir, run, seed)
        print(f"{len(RUNS)} runs of {STEPS} steps x {PROBES} probes x {FEATURES} features, {len(METHODS)} methods, "
              f"written in {time.time() - t0:.1f} s")
        print(f"{'load_fast':>9} {'clients':>7} {'requests':>8} {'p50 s':>7} {'p95 s':>7} {'max s':>7} "
              f"{'first s':>8} {'gzip B':>8} {'load s':>7} {'cpu s':>6}")
        firsts = []
        for load_fast in ("true", "false") if args.load_fast == "both" else (args.load_fast,):
            r = measure(logdir, load_fast, args.clients, args.requests, args.cold)
            print(f"{load_fast:>9} {args.clients:>7} {r['n']:>8} {r['p50']:>7.3f} {r['p95']:>7.3f} {r['max']:>7.3f} "
                  f"{r['first_s']:>8.3f} {r['gzip_bytes']:>8} {r['load_s']:>7.1f} {r['cpu_s']:>6.1f}")
            firsts.append((load_fast, r["views"]))
        for load_fast, views in firsts:
            print(f"{'slowest under the cold load' if args.cold else 'first answers, slowest'} per view "
                  f"(load_fast={load_fast}): "
                  + ", ".join(f"{view} {s:.3f} s" for view, s in views.items()))
    print("target: p95 <= 0.5 s under 16 concurrent clients")


if __name__ == "__main__":
    main()
