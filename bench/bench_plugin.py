"""Benchmark: the plugin's `evolution` answer on a big run, through a real TensorBoard server.

A run of 200 steps x 256 probes x 100 features (20 MB of float32 attributions per step series) is written with
`tb_xai.summary`; a TensorBoard server is started for each loader (`--load_fast=true`, `false`) and each cache
setting (the default, and `--xai_cache_mb 0`, which reads the tag through the data provider on every
request); the median wall time of the evolution query and its response size are printed.
Targets (issue 4): median under 0.3 s and under 2 MB.

Run: ``python bench/bench_plugin.py [--repeats 15]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the event writer may import TensorFlow

from tb_xai import metadata, summary

STEPS, PROBES, FEATURES = 200, 256, 100
RUN = "bench/xai"
QUERIES = ("", "&signed=1&target=1")  # all probes; signed, only probes explained for class 1
ROUTE = f"/data/plugin/{metadata.PLUGIN_NAME}/"
SERVER = """
import sys
from tensorboard import program
tb = program.TensorBoard()
tb.configure(argv=[None, "--logdir", sys.argv[1], "--host", "127.0.0.1", "--port", "0",
                   "--load_fast", sys.argv[2], "--xai_cache_mb", sys.argv[3]])
print(tb.launch(), flush=True)
sys.stdin.read()
"""


def write_run(logdir: str) -> None:
    rng = np.random.default_rng(0)
    names = [f"feature_{i}" for i in range(FEATURES)]
    writer = summary.SummaryWriter(os.path.join(logdir, RUN))
    for step in range(STEPS):
        for item in [
            summary.predictions_pb(rng.random((PROBES, 2))),
            summary.targets_pb(rng.integers(0, 2, PROBES)),
            summary.attribution_pb("integrated_gradients", "x", rng.normal(size=(PROBES, FEATURES)),
                                   feature_names=names, modality="tabular"),
        ]:
            writer.write(item, step)
    writer.close()


def get(host: str, port: int, path: str, gzipped: bool = False) -> tuple:
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "gzip"} if gzipped else {})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}: {body[:200]!r}")
        return body
    finally:
        connection.close()


def measure(logdir: str, load_fast: str, cache_mb: str, repeats: int) -> dict:
    process = subprocess.Popen([sys.executable, "-c", SERVER, logdir, load_fast, cache_mb],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = urllib.parse.urlsplit(process.stdout.readline().strip())
        host, port = url.hostname, url.port
        started = time.time()
        while True:
            runs = json.loads(get(host, port, ROUTE + "runs"))["runs"]
            if runs and len(runs[0]["prediction_steps"]) == STEPS:
                break
            if time.time() - started > 300:
                raise RuntimeError(f"run not loaded after 300 s (load_fast={load_fast})")
            time.sleep(1.0)
        load_s = time.time() - started
        results = {}
        for query in QUERIES:
            path = ROUTE + f"evolution?run={RUN}&method=integrated_gradients{query}"
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                body = get(host, port, path)
                times.append(time.perf_counter() - t0)
            answer = json.loads(body)
            if len(answer["steps"]) != STEPS or len(answer["importance"][0]) != FEATURES:
                raise RuntimeError("evolution answer does not hold every step and feature")
            results[query] = {
                "load_s": load_s,
                "median_s": statistics.median(times),
                "max_s": max(times),
                "bytes": len(body),
                "gzip_bytes": len(get(host, port, path, gzipped=True)),
            }
        return results
    finally:
        process.stdin.close()
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logdir:
        t0 = time.time()
        write_run(logdir)
        print(f"run: {STEPS} steps x {PROBES} probes x {FEATURES} features, written in {time.time() - t0:.1f} s")
        print(f"{'load_fast':>9} {'cache':>7} {'query':>18} {'median s':>9} {'max s':>7} {'bytes':>8} "
              f"{'gzip':>7} {'load s':>7}")
        for load_fast in ("true", "false"):
            for cache_mb in ("512", "0"):
                for query, r in measure(logdir, load_fast, cache_mb, args.repeats).items():
                    print(f"{load_fast:>9} {cache_mb + 'MB':>7} {query or '(all probes)':>18} "
                          f"{r['median_s']:>9.3f} {r['max_s']:>7.3f} {r['bytes']:>8} {r['gzip_bytes']:>7} "
                          f"{r['load_s']:>7.1f}")
    print("targets: median < 0.3 s, < 2 MB")


if __name__ == "__main__":
    main()
