"""Test selection: the ``slow`` and ``gpu`` checks are left out of the default run, and the GPU
checks fail, not skip, when they are selected on a machine without CUDA."""

import configparser
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_slow_and_gpu_checks_are_deselected_by_default_and_registered():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    assert '-m "not slow and not gpu"' in ini["pytest"]["addopts"]
    markers = ini["pytest"]["markers"]
    assert "slow:" in markers and "gpu:" in markers


def test_gpu_checks_fail_without_cuda_when_selected():
    if torch.cuda.is_available():  # here they run for real under `-m gpu`
        return
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-k", "sanity", "-p", "no:randomly", "--noconftest",
                           str(ROOT / "tests" / "test_gpu.py")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed" in out and "skipped" not in out and "CUDA is not available" in out
