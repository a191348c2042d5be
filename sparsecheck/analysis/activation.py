"""The target of a local explanation: one or more deep features' standardised activations
(``(a - mean_) / std_`` with the sparse layer's statistics) as a function of raw examples, the
model run in as few batched forward calls as memory allows (GPU when the device says so), forward
time measured (:class:`FeatureActivation`, one column of it: :class:`FeatureColumn`)."""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from sparsecheck._runtime import resolve_device
from sparsecheck.data import InputSpec
from sparsecheck.errors import ModelError, ParameterError
from sparsecheck.features.taps import FeatureExtractor

logger = logging.getLogger(__name__)

__all__ = ["FeatureActivation", "FeatureColumn"]


#: input values (floats) per forward call on the CPU when the batch size is chosen automatically
_CPU_INPUT_BUDGET = 1 << 24
#: share of free GPU memory a forward call may plan for, and the activation bytes assumed per
#: input byte (deep CNNs keep a few dozen times their input alive in inference mode)
_GPU_MEMORY_SHARE = 0.5
_ACTIVATION_FACTOR = 48
#: input values counted per token of a text (an input transform with a ``max_length``)
_TOKEN_FACTOR = 64


# --------------------------------------------------------------------------- the regression target
class FeatureActivation:
    """Standardised activation of deep features as a function of uint8 images.

    Calling it on a batch ``(n, H, W, C)`` of uint8 images returns ``(n, len(features))``
    float64 values ``(a - mean) / std``. Images are turned into model input by ``input_spec`` and
    run through :class:`~sparsecheck.features.taps.FeatureExtractor` in as few forward calls as
    memory allows. Use it as a context manager (the extractor's hooks are removed on exit).

    Parameters
    ----------
    model : Model or nn.Module
    feature : int or sequence of int
        Feature indices at ``layer``.
    layer : str, optional
        As for FeatureExtractor (default: the input of the last linear layer).
    input_spec : InputSpec, optional
        How uint8 images become model input (default: divide by 255).
    mean, std : float or array of shape (n_features_at_layer,), optional
        Standardisation statistics (the sparse layer's ``mean_`` and ``std_``); default 0 and 1.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"``.
    batch_size : int, optional
        Images per forward call; default chosen from the input size and free memory.
    channels : int, optional
        Channels of the model's stored images. LIME works on RGB; with ``channels=1`` the first
        channel of each image is kept.

    Attributes
    ----------
    forward_seconds : float
        Wall time spent inside the model's forward calls (synchronised on CUDA).
    forward_calls, images_seen : int
    """

    def __init__(self, model: Any, feature: int | Sequence[int], *, layer: str | None = None,
                 input_spec: Any = None, mean: Any = 0.0, std: Any = 1.0, device: str | torch.device = "cpu",
                 batch_size: int | None = None, channels: int | None = None) -> None:
        self.model = model
        self.features = np.atleast_1d(np.asarray(feature, dtype=np.int64))
        if self.features.ndim != 1 or self.features.size == 0:
            raise ParameterError(f"The 'feature' parameter of FeatureActivation must be an int or a non-empty "
                                 f"sequence of ints. Got {feature!r} instead.", parameter="feature")
        self.layer = layer
        if input_spec is None:
            input_spec = InputSpec()
        self.input_spec = input_spec
        self.mean = _pick(mean, self.features, "mean")
        self.std = _pick(std, self.features, "std")
        if np.any(self.std <= 0):
            raise ParameterError(f"The 'std' parameter of FeatureActivation must be positive. Got "
                                 f"{self.std.tolist()} instead.", parameter="std")
        self.device = resolve_device(device)
        if batch_size is not None and int(batch_size) < 1:
            raise ParameterError(f"The 'batch_size' parameter of FeatureActivation must be a positive int. "
                                 f"Got {batch_size!r} instead.", parameter="batch_size")
        self.batch_size = batch_size
        self.channels = channels
        self.forward_seconds = 0.0
        self.forward_calls = 0
        self.images_seen = 0
        self._extractor: Any = None

    # -- lifecycle
    def __enter__(self) -> "FeatureActivation":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        """Attach to the model (idempotent)."""
        if self._extractor is not None:
            return
        module = getattr(self.model, "module", self.model)
        if getattr(self.model, "program", None) is None and isinstance(module, nn.Module):
            module.eval()
        extractor = FeatureExtractor(self.model, self.layer, device=self.device)
        extractor.open()
        self._extractor = extractor

    def close(self) -> None:
        if self._extractor is not None:
            self._extractor.close()
            self._extractor = None

    # -- evaluation
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Standardised activations, shape ``(n, len(features))``, float64."""
        if self._extractor is None:
            raise RuntimeError("FeatureActivation used outside its 'with' block (call open() first)")
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if self.channels == 1 and images.shape[-1] == 3:
            images = images[..., :1]
        n = images.shape[0]
        out = np.empty((n, self.features.size), dtype=np.float64)
        step = self._batch_size(images)
        lo = 0
        while lo < n:
            chunk = images[lo:lo + step]
            try:
                out[lo:lo + len(chunk)] = self._forward(chunk)
            except torch.OutOfMemoryError:
                if step == 1:
                    raise
                step = max(1, step // 2)
                logger.info("out of memory in a forward call; retrying with batches of %d", step)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            lo += len(chunk)
        self.images_seen += n
        return (out - self.mean) / self.std

    def column(self, feature: int) -> "FeatureColumn":
        """A target for one of this activation's features (one forward pass serves all of them)."""
        matches = np.flatnonzero(self.features == int(feature))
        if matches.size == 0:
            raise ParameterError(f"feature {feature} is not among this FeatureActivation's features "
                                 f"{self.features.tolist()}", parameter="feature")
        return FeatureColumn(self, int(matches[0]))

    def _forward(self, images: np.ndarray) -> np.ndarray:
        x = self.input_spec.transform(images, device=self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            _, feats = self._extractor(x)
            if int(self.features.max()) >= feats.shape[1]:
                raise ModelError(f"feature {int(self.features.max())} does not exist: layer "
                                 f"{self._extractor.layer_name!r} has {feats.shape[1]} features")
            picked = feats[:, torch.as_tensor(self.features, device=feats.device)].float()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        self.forward_calls += 1
        return picked.cpu().numpy()

    def batch_size_for(self, image: np.ndarray) -> int:
        """Images like ``image`` (H, W[, C]) that one forward call takes on this device: the
        ``batch_size`` given, else what the device's free memory (CUDA) or a fixed input budget
        (CPU) allows. LIME draws its perturbed images in batches of this size."""
        image = np.asarray(image)
        return self._batch_size(np.broadcast_to(image, (1 << 30, *image.shape)))

    def _batch_size(self, images: np.ndarray) -> int:
        n = images.shape[0]
        if self.batch_size is not None:
            return min(n, int(self.batch_size))
        max_length = getattr(self.input_spec, "max_length", None)
        if max_length is not None:  # texts: at most max_length tokens each, a few dozen values per token
            per_image = int(max_length) * _TOKEN_FACTOR
        else:
            spec_size = getattr(self.input_spec, "size", None)
            pixels = int(np.prod(spec_size)) if spec_size else int(np.prod(images.shape[1:3]))
            per_image = pixels * max(3, images.shape[-1] if images.ndim == 4 else 1)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = int(_GPU_MEMORY_SHARE * free / (4 * _ACTIVATION_FACTOR))
        else:
            budget = _CPU_INPUT_BUDGET
        return max(1, min(n, budget // max(per_image, 1)))


class FeatureColumn:
    """One feature of a :class:`FeatureActivation`: images → ``(n, 1)`` standardised activations."""

    def __init__(self, activation: FeatureActivation, index: int) -> None:
        self.activation = activation
        self.index = index

    @property
    def forward_seconds(self) -> float:
        return self.activation.forward_seconds

    def batch_size_for(self, image: np.ndarray) -> int:
        return self.activation.batch_size_for(image)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.activation(images)[:, self.index:self.index + 1]


def _pick(value: Any, features: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(features.size, float(arr))
    if arr.ndim != 1 or int(features.max()) >= arr.size:
        raise ParameterError(f"The {name!r} parameter of FeatureActivation must be a float or a vector "
                             f"covering feature {int(features.max())}. Got shape {arr.shape} instead.",
                             parameter=name)
    return arr[features]
