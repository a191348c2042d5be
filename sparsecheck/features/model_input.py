"""Calling a model on its input, whatever the kind of input: one tensor, or named tensors.

An image model takes one float tensor; a Hugging Face text model takes ``input_ids`` and
``attention_mask`` as keyword arguments and returns a ``ModelOutput`` holding ``logits``. Every
forward pass sparsecheck makes (extraction, LIME targets, interventions, invariance checks) goes
through :func:`call_model` and reads the logits with :func:`output_tensor`.

Examples
--------
>>> import torch, torch.nn as nn
>>> call_model(nn.Identity(), torch.zeros(2, 3)).shape
torch.Size([2, 3])
>>> batch_length({"input_ids": torch.zeros(4, 7, dtype=torch.long)}), batch_length(torch.zeros(3, 2))
(4, 3)
>>> output_tensor((torch.ones(1), "aux")).tolist()
[1.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch

from sparsecheck.errors import ModelError

__all__ = ["ModelInput", "call_model", "batch_length", "output_tensor", "to_device"]

#: what a model's forward takes: one tensor, or named tensors passed as keyword arguments
ModelInput = "torch.Tensor | Mapping[str, torch.Tensor]"


def call_model(module: Callable[..., Any], x: Any) -> Any:
    """Run ``module`` on model input ``x``: ``module(**x)`` for a mapping of named tensors (a
    tokenised text batch; its ``input_ids`` alone, positionally, when the mapping says
    ``positional``: a text model whose ``forward`` takes no ``input_ids`` keyword), else ``module(x)``."""
    if isinstance(x, Mapping):
        if getattr(x, "positional", False):
            return module(x["input_ids"])
        return module(**x)
    return module(x)


def batch_length(x: Any) -> int:
    """Examples in model input ``x`` (its first tensor's first dimension) or in a raw batch."""
    if isinstance(x, Mapping):
        first = next(iter(x.values()))
        return int(first.shape[0])
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(x)


def to_device(x: Any, device: str | torch.device) -> Any:
    """Model input moved to ``device`` (each tensor of a mapping)."""
    if isinstance(x, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in x.items()}
    return x.to(device)


def output_tensor(output: Any) -> torch.Tensor:
    """The logits in a model's output: the output itself, its ``logits`` (Hugging Face
    ``ModelOutput`` and look-alikes), the first tensor of a tuple, or the first tensor value of a dict."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)  # Hugging Face ModelOutput and look-alikes
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for v in output.values():
            if isinstance(v, torch.Tensor):
                return v
    raise ModelError(f"model output is {type(output).__name__}, not a tensor of logits")
