"""The sparse decision layer attached to the model it explains: one ``nn.Module`` from model input to
the sparse layer's logits.

:class:`SparseClassifier` runs the model's body up to the feature layer (a forward hook on that
module, added for the call and removed in ``finally``), standardises the features as the layer
does and applies the sparse weights; it returns logits over the layer's ``classes_``. Its
predictions are :meth:`SparseDecisionLayer.predict` on the model's features, so it is the
debuggable model a user can deploy in place of the dense one. It is built from an ``nn.Module``
(factory, torchvision, timm, Hugging Face) or a ``torch.export`` program (unflattened back into
its modules); a TorchScript body cannot be re-exported with ``torch.export`` and is refused.

Examples
--------
>>> import numpy as np, torch, torch.nn as nn
>>> from sparsecheck.sparse import SparseDecisionLayer
>>> net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
>>> X = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
>>> with torch.no_grad():
...     feats = torch.relu(net[0](torch.from_numpy(X))).numpy()
>>> layer = SparseDecisionLayer(n_lambdas=5, device="cpu").fit(feats, (X[:, 0] > 0).astype(int))
>>> clf = build_sparse_classifier(net, layer, "2:input")
>>> bool((clf(torch.from_numpy(X)).argmax(1).numpy() == layer.predict(feats)).all())
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from sparsecheck.errors import ModelError
from sparsecheck.models import Model
from sparsecheck.features.taps import capture, split_layer

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.sparse.layer import SparseDecisionLayer

__all__ = ["SparseClassifier", "build_sparse_classifier"]


class SparseClassifier(nn.Module):
    """``logits = head(features(body, x))``: a model's body with a sparse decision layer as its head.

    Parameters
    ----------
    body : nn.Module
        The model; only its module named by ``feature_layer`` matters for the output.
    feature_layer : str
        ``NAME`` (the module's output) or ``NAME:input`` (what the module receives), as
        :class:`~sparsecheck.features.taps.FeatureExtractor` resolved it.
    head : nn.Module
        :meth:`SparseDecisionLayer.to_module` (standardise, then the sparse linear layer).
    """

    def __init__(self, body: nn.Module, feature_layer: str, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.feature_layer = feature_layer
        self.target, self.take_input = split_layer(feature_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = capture(self.body.get_submodule(self.target), self.take_input, captured)
        try:
            self.body(x)
        finally:
            handle.remove()
        if not captured:
            raise ModelError(f"layer {self.feature_layer!r} was not called in the forward pass")
        return self.head(captured[-1].flatten(1))


def build_sparse_classifier(model: Model | nn.Module, layer: "SparseDecisionLayer",
                            feature_layer: str) -> SparseClassifier:
    """The model with ``layer`` as its head (see :class:`SparseClassifier`), in eval mode.

    Parameters
    ----------
    model : Model or nn.Module
        The model the layer was fitted on (its features at ``feature_layer``).
    layer : SparseDecisionLayer
        Fitted.
    feature_layer : str
        The resolved feature layer (``results["model"]["feature_layer"]``, e.g. ``"fc:input"``).

    Raises
    ------
    ModelError
        for a TorchScript model (it cannot be unflattened into modules or re-exported), or a
        feature layer the model does not have.
    """
    if not isinstance(model, Model):
        model = Model(model, "module", type(model).__name__)
    if isinstance(model.module, torch.jit.ScriptModule):
        raise ModelError("a TorchScript model cannot be re-exported with torch.export (the format "
                         "mlflow.pytorch loads without unpickling), so only the sparse head is logged",
                         path=model.source)
    body = torch.export.unflatten(model.program) if model.program is not None else model.module
    target, _ = split_layer(feature_layer)
    try:
        body.get_submodule(target)
    except AttributeError as exc:
        raise ModelError(f"feature layer {feature_layer!r} is not a module of the model",
                         path=model.source) from exc
    classifier = SparseClassifier(body, feature_layer, layer.to_module().eval())
    classifier.training = False  # the body is in inference form already (an exported one refuses eval())
    return classifier
