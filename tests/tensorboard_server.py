"""The one TensorBoard server the tests use: a real `tensorboard` in its own process on 127.0.0.1.

`Server(logdir, load_fast)` starts it (`--load_fast true` is the Rust data server, `false` the Python loader);
`get` sends a path as is (no client-side normalization of '..') and answers ``(status, body)``.

Where TensorFlow is installed (as tb_xai's users have it) TensorBoard imports it at start, some 5 s of CPU per
server here. Only the Python loader reads event files through it; the Rust data server reads them itself. So a
`true` server starts without it by default (`tensorflow=True` keeps it), TensorBoard running as it does where
TensorFlow is not installed (its own stub, chosen through `tensorboard.compat.notf`). The browser tests keep it,
as users run it.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.parse

ROUTE = "/data/plugin/tb_xai/"

_SERVER = """
import sys
if sys.argv[3] == "without_tensorflow":
    import types
    sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")
from tensorboard import program
tb = program.TensorBoard()
tb.configure(argv=[None, "--logdir", sys.argv[1], "--host", "127.0.0.1", "--port", "0", "--load_fast", sys.argv[2],
                   *sys.argv[4:]])
print(tb.launch(), flush=True)
sys.stdin.read()
"""


class Server:
    """A TensorBoard server in its own process; stop it with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, logdir: str, load_fast: str, *flags: str, stderr=subprocess.DEVNULL, tensorflow=None):
        tensorflow = load_fast != "true" if tensorflow is None else tensorflow
        mode = "with_tensorflow" if tensorflow else "without_tensorflow"
        self.process = subprocess.Popen([sys.executable, "-c", _SERVER, logdir, load_fast, mode, *flags],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        url = urllib.parse.urlsplit(self.process.stdout.readline().strip())
        if not url.port:
            self.stop()
            raise RuntimeError(f"TensorBoard did not start (load_fast={load_fast})")
        self.host, self.port = url.hostname, url.port
        self.url = f"http://{self.host}:{self.port}"
        self.logdir = logdir
        self.load_fast = load_fast

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def get(self, path: str, headers: dict = None) -> tuple:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def json(self, path: str):
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def wait_for(self, runs: dict, timeout: float = 120.0) -> dict:
        """Polls `runs` until every run named in `runs` lists at least that many prediction steps."""
        deadline = time.time() + timeout
        while True:
            listed = {r["run"]: r for r in self.json(ROUTE + "runs")["runs"]}
            if all(len(listed.get(name, {}).get("prediction_steps", [])) >= n for name, n in runs.items()):
                return listed
            if time.time() > deadline:
                raise AssertionError(f"runs not loaded in {timeout}s: {sorted(listed)}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.terminate()
            self.process.wait(timeout=30)


def wsgi_client(logdir: str, *extra_flags):
    """TensorBoard's real WSGI app on the Python loader, loaded once in this process, behind werkzeug's client."""
    from tensorboard import program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester
    from werkzeug import test as werkzeug_test

    tb = program.TensorBoard()
    tb.configure(argv=[None, "--logdir", logdir, "--load_fast", "false", "--reload_interval", "0",
                       "--reload_task", "blocking", *extra_flags])
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(tb.flags, tb.plugin_loaders, ingester.data_provider,
                                         tb.assets_zip_provider, ingester.deprecated_multiplexer)
    return werkzeug_test.Client(app)
