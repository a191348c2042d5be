"""The GPU paths: feature extraction on CUDA (fp32 and bf16 autocast), the FISTA path with the
features held in fp32 and in bf16, batched LIME and the model-randomisation sanity check.

Each result is compared with the same computation on the CPU. Marked ``gpu`` and deselected by
default (``pytest.ini``); run them on a machine with a GPU with ``python -m pytest -m gpu``.
Selected where CUDA is missing, every test FAILS rather than skips: a GPU check that skips would
read as a GPU check that passed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsecheck.analysis.lime_features import FeatureActivation, LimeFeatureExplainer
from sparsecheck.analysis.sanity import model_randomisation_test
from sparsecheck.data import ImageDataset, InputSpec
from sparsecheck.sparse import SparseDecisionLayer
from sparsecheck.features.extraction import extract_features
from sparsecheck.modalities import get_modality
from tests.helpers import make_tiny_net
from tests.sparse.test_layer import assert_same_selection, fit_in_precision, planted

pytestmark = pytest.mark.gpu


def require_cuda() -> str:
    """The CUDA device; fails the calling test (not a skip) where there is none."""
    if not torch.cuda.is_available():
        pytest.fail(f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
                    f"the gpu tests check the GPU paths and need a GPU", pytrace=False)
    return "cuda"


@pytest.fixture
def images() -> ImageDataset:
    rng = np.random.default_rng(0)
    return ImageDataset.from_arrays(rng.integers(0, 256, (300, 8, 8), dtype=np.uint8), rng.integers(0, 3, 300),
                                    name="toy")


def test_extraction_on_cuda_matches_the_cpu_in_fp32_and_bf16(images):
    cuda = require_cuda()
    cpu = extract_features(make_tiny_net(), images, InputSpec(), batch_size=64, device="cpu")
    gpu = extract_features(make_tiny_net(), images, InputSpec(), batch_size=64, device=cuda)
    scale = float(np.abs(cpu.features).max())
    np.testing.assert_allclose(gpu.features, cpu.features, atol=1e-3 * scale)  # TF32 convolutions allowed
    np.testing.assert_allclose(gpu.logits, cpu.logits, atol=1e-3 * float(np.abs(cpu.logits).max()))
    half = extract_features(make_tiny_net(), images, InputSpec(), batch_size=64, device=cuda, precision="bf16")
    assert half.features.dtype == np.float32  # computed under bf16 autocast, stored as float32
    np.testing.assert_allclose(half.features, cpu.features, atol=3e-2 * scale)
    assert float(np.mean(half.logits.argmax(1) == cpu.logits.argmax(1))) >= 0.95


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fista_path_on_cuda_selects_the_cpu_layer(precision):
    device = require_cuda()
    data = planted()
    assert_same_selection(fit_in_precision("cpu", "fp32", data), fit_in_precision(device, precision, data))


def test_bf16_halves_the_memory_the_fista_path_holds_on_cuda():
    device = require_cuda()
    X, y = planted(n=200_000, d=256, n_classes=3, k=3)
    peaks = {}
    for precision in ("fp32", "bf16"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        SparseDecisionLayer(n_lambdas=3, solver="fista", device=device, precision=precision,
                            early_stop=False).fit(X[:150_000], y[:150_000], X[150_000:], y[150_000:])
        peaks[precision] = torch.cuda.max_memory_allocated()
    assert peaks["bf16"] < 0.7 * peaks["fp32"], peaks


def test_batched_lime_on_cuda_draws_all_perturbations_in_one_call_and_matches_the_cpu(images):
    cuda = require_cuda()
    image = images.images[0]
    explainer = LimeFeatureExplainer(num_samples=300, random_state=0)
    found = {}
    for device in ("cpu", cuda):
        with FeatureActivation(make_tiny_net(), [0, 1], device=device, channels=1) as target:
            assert target.batch_size_for(image[..., None]) >= 300
            found[device] = explainer.explain(image, target.column(1), feature=1)
            assert target.forward_calls == 1 and explainer.last_batch_size_ == 300
    cpu, gpu = found["cpu"], found[cuda]
    np.testing.assert_array_equal(gpu.segments, cpu.segments)
    np.testing.assert_allclose(gpu.weights, cpu.weights, atol=1e-2 * float(np.abs(cpu.weights).max()))


def test_sanity_check_on_cuda_agrees_with_the_cpu(images):
    cuda = require_cuda()
    chosen = images.images[:2]
    result = {}
    for device in ("cpu", cuda):
        result[device] = model_randomisation_test(
            make_tiny_net(), 1, chosen, probes=get_modality("image").sanity_probes(chosen), explainer=LimeFeatureExplainer(num_samples=150, random_state=0),
            cascade=False, random_state=0, device=device, channels=1)
    assert np.isfinite(result[cuda].spearman)
    assert abs(result[cuda].spearman - result["cpu"].spearman) <= 0.05
    assert result[cuda].trustworthy == result["cpu"].trustworthy
