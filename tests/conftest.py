"""Shared fixtures: a real ``mlflow server`` on loopback and a headless Chromium driven by selenium.

Both are real components. Where one is missing, a test that needs it is skipped on a developer
machine but FAILS under ``CI=true``: CI must never pass by skipping. The MLflow server is a Python
dependency of sparsecheck, so a server that does not come up always fails.

The server is slow to start (tens of seconds on a small machine), so it is launched as soon as
collection finds a test that uses it and comes up while other tests run; the fixture then only
waits for ``/health``. It is terminated at the end of the session, whatever happens.

Every test session logs to a throwaway MLflow store by default (``MLFLOW_TRACKING_URI`` is set
to a temporary SQLite file), so no test writes ``mlflow.db`` into the working tree.
"""

from __future__ import annotations

import mlflow  # noqa: F401  (mlflow binds its log handler to sys.stderr on import: do it before capture)
# MLflow's evaluator registry imports through MLflow's import-hook lock; imported here, before the
# background thread that opens the default store (prefetch) starts, the two never wait on each other
import mlflow.models.evaluation.evaluator_registry  # noqa: F401,E402
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = os.environ.get("SPARSECHECK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SPARSECHECK_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1280,2000",
               "--hide-scrollbars")
SERVER_START_TIMEOUT_S = 180.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Skip locally, fail under CI=true, when a real component a test needs is missing."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is required under CI=true but is missing", pytrace=False)
    pytest.skip(f"{what} is missing")


# --------------------------------------------------------------------------- MLflow server


class MlflowServer:
    """An ``mlflow server`` subprocess on 127.0.0.1 with a SQLite store and local artifacts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self.artifacts = root / "art"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.root / 'srv.db'}",
               "--artifacts-destination", str(self.artifacts), "--workers", "1"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env,
                                         start_new_session=True)

    def wait(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer /health within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        """Terminate the server and its children (uvicorn, job runner): its own process group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)  # the group was created for this server (start_new_session)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(proc.pid):
                proc.poll()
                time.sleep(0.2)
            if not _group_alive(proc.pid):
                break
        proc.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_SERVER: dict[str, Any] = {}


def _launch_server() -> MlflowServer:
    if "server" not in _SERVER:
        root = Path(tempfile.mkdtemp(prefix="sparsecheck-mlflow-server-"))
        server = MlflowServer(root)
        _SERVER["server"] = server
        server.start()
    return _SERVER["server"]


def _mlflow_cwd() -> Path:
    if "cwd" not in _SERVER:
        # resolved: the default tracking URI is built from the resolved working directory
        path = Path(tempfile.mkdtemp(prefix="sparsecheck-mlflow-cwd-")).resolve()
        _SERVER["cwd"] = path
        from sparsecheck.tracking.store import prefetch

        prefetch(f"sqlite:///{path / 'mlflow.db'}")  # MLflow's schema is created while other tests run
    return _SERVER["cwd"]


def pytest_collection_finish(session: pytest.Session) -> None:
    # start slow things early so that they get ready while other tests run
    names = set().union(*(getattr(item, "fixturenames", ()) for item in session.items)) if session.items else set()
    if "mlflow_server" in names:
        _launch_server()
    if "mlflow_cwd" in names:
        _mlflow_cwd()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    server = _SERVER.pop("server", None)
    if server is not None:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
    cwd = _SERVER.pop("cwd", None)
    if cwd is not None:
        shutil.rmtree(cwd, ignore_errors=True)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module: small models and solves lose 5-30x to a second thread
    on a shared, loaded machine. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    from sparsecheck._runtime import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session", autouse=True)
def _mlflow_store_outside_the_work_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs that tests log without naming a tracking URI go to a throwaway SQLite store: never to
    ``mlflow.db`` in the working tree, nor to a server a developer's MLFLOW_TRACKING_URI names."""
    root = tmp_path_factory.mktemp("mlflow-default-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        # unreachable servers are still retried (3 attempts), only without the seconds of waiting between
        patch.setenv("SPARSECHECK_TRACKING_BACKOFF_S", "0.05")
        yield


@pytest.fixture(scope="session")
def mlflow_cwd() -> Path:
    """A working directory for the embedded default store (``sqlite:///mlflow.db`` there).

    The store is opened (its schema created) in the background as soon as collection finds a
    test that uses this fixture, the way a pipeline prefetches it while extracting features.
    """
    return _mlflow_cwd()


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on 127.0.0.1 (free port), SQLite store and local artifacts dir."""
    server = _launch_server()
    try:
        server.wait()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- headless Chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium via selenium and chromedriver, with browser console logging on."""
    require(Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK), f"chromium ({CHROMIUM})")
    require(Path(CHROMEDRIVER).is_file() and os.access(CHROMEDRIVER, os.X_OK), f"chromedriver ({CHROMEDRIVER})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium")
        raise
    profile = tempfile.mkdtemp(prefix="sparsecheck-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# --------------------------------------------------------------------------- a small real run


def write_feature_image(path: Path, seed: int, *, tiles: int = 8, size: int = 32) -> None:
    """A strip of ``tiles`` coloured 32x32 tiles, standing in for a feature's top examples."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    strip = np.zeros((size, size * tiles, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for t in range(tiles):
        cy, cx, r = rng.integers(8, 24), rng.integers(8, 24), rng.integers(5, 11)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
        tile = np.full((size, size, 3), rng.integers(20, 60), dtype=np.uint8)
        tile[blob] = rng.integers(120, 256, size=3, dtype=np.uint8)
        strip[:, t * size:(t + 1) * size] = tile
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).resize((size * tiles * 2, size * 2), Image.NEAREST).save(path)


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real pipeline run (load, extract, dense) on a tiny project plus a real sparse layer.

    Returns the RunContext without an output directory; use ``run_ctx`` for one per test.
    """
    import numpy as np

    from sparsecheck.config import parse_config
    from sparsecheck.pipeline import run_pipeline
    from sparsecheck.pipeline.stages import dense_stage, extract_stage, load_stage
    from sparsecheck.results import SparseLayerSummary
    from sparsecheck.sparse import SparseDecisionLayer
    from tests.helpers import write_project

    root = tmp_path_factory.mktemp("small-project")
    raw = write_project(root, n=90)
    for i, split in enumerate(("train", "val", "test")):  # labels the features can tell apart: brightness
        with np.load(root / f"{split}.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        rng = np.random.default_rng(i)
        level = rng.integers(0, 3, len(arrays["y"]))
        arrays["x"] = (rng.integers(0, 90, size=arrays["x"].shape) + 80 * level[:, None, None]).astype(np.uint8)
        arrays["y"] = level
        np.savez(root / f"{split}.npz", **arrays)
    raw["data"]["class_names"] = ["cat", "dog", "wolf"]
    raw["data"]["spurious_attributes"] = ["colour"]
    # the sparse layer as MLflow models costs seconds per run: tests/reports/test_tracking_inputs.py turns it on
    raw["mlflow"] = {"enabled": True, "experiment": "sparsecheck-tests", "log_sparse_model": False}
    cfg = parse_config(raw, base_dir=root)
    ctx = run_pipeline(cfg, None, device="cpu", stages=[load_stage, extract_stage, dense_stage])
    train, val, test = ctx.splits["train"], ctx.splits["val"], ctx.splits["test"]
    layer = SparseDecisionLayer(n_lambdas=10, solver="fista", device="cpu", max_epochs=300, tol=1e-4)
    layer.fit(train.features, train.labels, val.features, val.labels)
    assert len(layer.used_features()) >= 2, layer.path_
    ctx.sparse_layer = layer
    sparse_pred = layer.predict(np.asarray(test.features))
    ctx.run_results.sparse_layer = SparseLayerSummary.model_validate({
        "dense_accuracy": float(np.mean(test.dense_predictions == test.labels)),
        "sparse_accuracy": float(np.mean(sparse_pred == test.labels)),
        **layer.to_dict([ctx.class_names[int(c)] for c in layer.classes_]),
    })
    return ctx


@pytest.fixture
def run_ctx(small_run: Any, tmp_path: Path) -> Any:
    """A copy of ``small_run`` with its own output directory, holding what the stages would write:
    the saved sparse layer, feature-card images, slices, findings and assertion results."""
    import dataclasses

    from sparsecheck.pipeline import prepare_out_dir
    from sparsecheck.results import AssertionResult, FeatureCardRecord, SliceRecord

    out = prepare_out_dir(tmp_path / "out")
    ctx = dataclasses.replace(small_run, out_dir=out, run_results=small_run.run_results.model_copy(deep=True),
                              artifacts={},
                              config=small_run.config.model_copy(deep=True))
    layer = ctx.sparse_layer
    layer.save(out / "sparse_layer")
    ctx.artifacts["sparse_layer"] = str(out / "sparse_layer")
    used = [int(f) for f in layer.used_features()]
    cards = []
    for i, feature in enumerate(used):
        write_feature_image(out / "features" / f"feature_{feature}.png", seed=feature)
        cards.append({"feature": feature,
                      "classes": [{"class": ctx.class_names[int(c)], "weight": float(layer.weight_[k, feature])}
                                  for k, c in enumerate(layer.classes_) if layer.weight_[k, feature] != 0],
                      "image": f"features/feature_{feature}.png",
                      "top_examples": [str(x) for x in ctx.splits["test"].ids[:5]],
                      "bottom_examples": [str(x) for x in ctx.splits["test"].ids[-5:]],
                      "associations": [{"attribute": "colour", "value": "red", "effect": 0.62, "q_value": 0.2}],
                      "lime": None,
                      "sanity": {"spearman": 0.9, "trustworthy": False} if i == 0 else None})
    results = ctx.run_results
    results.feature_cards = [FeatureCardRecord.model_validate(c) for c in cards]
    results.slices = [SliceRecord.model_validate(s) for s in [
        {"predicates": {"site": "b"}, "size": 21, "error_rate": 0.81, "ci_low": 0.6, "ci_high": 0.92,
         "p_value": 0.001, "q_value": 0.01, "significant": True},
        {"predicates": {"site": "a", "colour": "red"}, "size": 12, "error_rate": 0.5, "ci_low": 0.25,
         "ci_high": 0.75, "p_value": 0.2, "q_value": 0.4, "significant": False},
    ]]
    results.assertions = [AssertionResult.from_dict(a) for a in [
        {"name": "sparse accuracy", "status": "pass", "severity": "error", "observed": 0.5, "threshold": 0.3,
         "message": "ok"},
        {"name": "wolf must not use colour", "status": "fail", "severity": "error", "observed": 0.62,
         "threshold": 0.6, "message": "class wolf relies on feature 2 (colour = red)"},
        {"name": "few features", "status": "fail", "severity": "warning", "observed": 4, "threshold": 3,
         "message": "more features than wanted"},
    ]]
    results.timings = {"load": 0.5, "extract": 0.2, "dense": 0.01}
    return ctx


@pytest.fixture(autouse=True)
def _restore_logging():
    """Tests call the CLI's main() in-process: undo the logging set-up it does for a real process."""
    import logging

    names = ("sparsecheck", "torch", "mlflow", "alembic", "urllib3")
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
             for n in names}
    yield
    for n, (level, handlers, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
