"""Taps: run a model and capture the features at one layer alongside its logits.

The default layer is the *input* of the model's last ``nn.Linear`` (what its decision layer sees);
any named module's output (or ``NAME:input``) on request. Three kinds of model are tapped three
ways: an ``nn.Module`` with a forward hook (removed on exit, also when the forward pass raises), a
``torch.export`` program by adding the layer's value as a graph output, and TorchScript by the same
on a copy of its graph.

Examples
--------
>>> import torch, torch.nn as nn
>>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
>>> with FeatureExtractor(net) as tap:
...     logits, feats = tap(torch.zeros(5, 3))
>>> logits.shape, feats.shape, tap.layer_name
(torch.Size([5, 2]), torch.Size([5, 4]), '2:input')
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn

from sparsecheck._runtime import note_forward, resolve_device
from sparsecheck.errors import ModelError
from sparsecheck.features.model_input import batch_length, call_model, output_tensor
from sparsecheck.models import Model

logger = logging.getLogger(__name__)

__all__ = ["FeatureExtractor", "capture", "split_layer", "script_module_path"]


class FeatureExtractor:
    """Run a model and capture the features at one layer alongside its logits.

    Use as a context manager: hooks are removed on exit, also when the forward pass raises.

    Parameters
    ----------
    model : Model or nn.Module
    layer : str, optional
        A module name whose *output* is taken (flattened to 2-D). Default: the *input* of the
        model's last ``nn.Linear`` — the representation its decision layer sees.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> with FeatureExtractor(net) as fx_:
    ...     logits, feats = fx_(torch.zeros(5, 3))
    >>> logits.shape, feats.shape, len(net[2]._forward_hooks)
    (torch.Size([5, 2]), torch.Size([5, 4]), 0)
    """

    def __init__(self, model: Model | nn.Module, layer: str | None = None,
                 device: str | torch.device | None = None) -> None:
        self.model = model if isinstance(model, Model) else Model(model, "module", type(model).__name__)
        self.layer = layer
        self.device = None if device is None else resolve_device(device)
        self.layer_name = ""
        self._handles: list[Any] = []
        self._captured: list[torch.Tensor] = []
        self._run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    # -- lifecycle
    def __enter__(self) -> "FeatureExtractor":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        if self.model.program is not None:
            run = self._open_graph()
        elif isinstance(self.model.module, torch.jit.ScriptModule):
            run = self._open_script()
        else:
            run = self._open_hook()
        self._run = self._refuse_logits(run)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._captured.clear()

    def __call__(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits, features)`` for a batch of model input: a tensor, or named tensors
        passed as keyword arguments (:func:`~sparsecheck.features.model_input.call_model`)."""
        if self._run is None:
            raise RuntimeError("FeatureExtractor used outside its 'with' block")
        note_forward(batch_length(x))
        return self._run(x)

    # -- nn.Module: forward hooks
    def _open_hook(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        module = self.model.module
        named = dict(module.named_modules())
        if self.layer is None:
            linears = [n for n, m in named.items() if isinstance(m, nn.Linear)]
            if not linears:
                raise ModelError("model has no nn.Linear layer; set model.feature_layer",
                                 path=self.model.source)
            target, take_input = linears[-1], True
        else:
            target, take_input = split_layer(self.layer)
            if target not in named or target == "":
                raise _no_such_layer(self.layer, [n for n in named if n], self.model.source)
        self.layer_name = f"{target}:input" if take_input else target

        self._handles.append(capture(named[target], take_input, self._captured))
        if self.device is not None:
            module.to(self.device)

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self._captured.clear()
            logits = output_tensor(call_model(module, x))
            if not self._captured:
                raise ModelError(f"layer {self.layer_name!r} was not called in the forward pass",
                                 path=self.model.source)
            feats = self._captured[-1]
            self._captured.clear()
            return logits, feats.flatten(1)

        return run

    # -- exported programs (and converted TorchScript): add the layer's value as a graph output
    def _open_graph(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        program = self.model.program
        gm = program.module()
        graph = gm.graph
        nodes = list(graph.nodes)
        if self.layer is None:
            linear_ops = (torch.ops.aten.linear.default, torch.ops.aten.addmm.default)
            linears = [n for n in nodes if n.op == "call_function" and n.target in linear_ops]
            if not linears:
                raise ModelError("model graph has no linear layer; set model.feature_layer",
                                 path=self.model.source)
            last = linears[-1]
            tap = last.args[0] if last.target == torch.ops.aten.linear.default else last.args[1]
            owner = _module_path(last) or "linear"
            self.layer_name = f"{owner}:input"
        else:
            target, take_input = split_layer(self.layer)
            inside = [n for n in nodes if _in_module(n, target)]
            if not inside:
                names = sorted({p for n in nodes for p in _module_paths(n) if p})
                raise _no_such_layer(self.layer, names, self.model.source)
            if take_input:  # the first tensor flowing into the module from outside it
                members = set(inside)
                tap = next((a for n in inside for a in n.all_input_nodes
                            if a not in members and _is_tensor_node(a)), None)
                if tap is None:
                    raise ModelError(f"feature_layer {self.layer!r}: the module takes no tensor input",
                                     path=self.model.source)
            else:
                tap = inside[-1]
            self.layer_name = self.layer
        out = next(n for n in nodes if n.op == "output")
        (orig,) = out.args
        logits_node = orig[0] if isinstance(orig, (tuple, list)) else orig
        out.args = ((logits_node, tap),)
        for n in list(graph.nodes):  # export's input guards refer to the original output spec
            if n.op == "call_module" and "guards" in str(n.target) and not n.users:
                graph.erase_node(n)
        graph._codegen = fx.graph.CodeGen()
        tapped = fx.GraphModule(gm, graph)
        tapped.recompile()
        if self.device is not None:
            tapped.to(self.device)

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, feats = call_model(tapped, x)
            return logits, feats.flatten(1)

        return run


    # -- TorchScript (scripted or traced): add the layer's value as an output of a copy of the graph
    def _open_script(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        module = self.model.module
        current = next((p.device for p in module.parameters()), None)
        if self.device is not None and current is not None and current != self.device:
            module.to(self.device)
        graph, self.layer_name = _script_tap_graph(module, self.layer, self.model.source)
        # TorchScript has no public way to run an edited graph; this is the one private call, and
        # it keeps the model in TorchScript (no conversion, the module's own weights and code)
        fn = torch._C._create_function_from_graph(f"sparsecheck_tap_{id(self)}", graph)

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, feats = fn(module._c, x)
            return output_tensor(logits), feats.flatten(1)

        return run

    def _refuse_logits(self, run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
                       ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Wrap ``run`` to refuse, on the first batch, a feature layer that *is* the model's output."""
        checked = False

        def checked_run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal checked
            logits, feats = run(x)
            if not checked:
                checked = True
                if feats.shape == logits.shape and torch.equal(feats, logits):
                    target, _ = split_layer(self.layer or "")
                    raise ModelError(
                        f"feature_layer {self.layer!r} gives the model's logits, not features: a sparse "
                        f"layer over them would explain nothing. Use {target + ':input'!r} for what the "
                        f"head sees (or leave feature_layer unset for the input of the last linear layer)",
                        path=self.model.source)
            return logits, feats

        return checked_run


def capture(module: nn.Module, take_input: bool, into: list[torch.Tensor]) -> Any:
    """The one forward hook: on every call of ``module``, append what it receives (its first
    input, ``take_input``) or what it returns (the output's tensor) to ``into``. Returns the
    handle; ``handle.remove()`` detaches it."""

    def hook(_module: nn.Module, inputs: tuple, output: Any) -> None:
        into.append(inputs[0] if take_input else output_tensor(output))

    return module.register_forward_hook(hook)


def split_layer(layer: str) -> tuple[str, bool]:
    """``"fc:input"`` → ``("fc", True)``; ``"avgpool"`` → ``("avgpool", False)`` (the output).

    Examples
    --------
    >>> split_layer("classifier.1:input"), split_layer("layer4")
    (('classifier.1', True), ('layer4', False))
    """
    name, sep, what = layer.rpartition(":")
    if sep and what == "input":
        return name, True
    return layer, False


def _no_such_layer(layer: str | None, names: list[str], source: str) -> ModelError:
    import difflib

    target, _ = split_layer(layer or "")
    close = difflib.get_close_matches(target, names, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ModelError(f"feature_layer {layer!r} does not exist{hint}; layers: {_preview(names)}; "
                      f"name a module for its output, or NAME:input for its input", path=source)


def _is_tensor_node(node: fx.Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) or (val is None and node.op != "get_attr")


# --------------------------------------------------------------------------- TorchScript taps
def script_module_path(node: Any) -> str:
    """The module path (``"layer4.1.conv2"``) a node of an inlined TorchScript graph belongs to.

    Scripted graphs record ``SELF(ResNet).layer4(Sequential).1(BasicBlock)...``, traced ones
    ``layer4(Sequential).1(BasicBlock)...``; calls into functions add ``UNKNOWN_INSTANCE`` parts.
    """
    import re

    try:
        hierarchy = node.getModuleHierarchy()
    except Exception:  # pragma: no cover - older torch
        return ""
    parts = [m.group(1) for m in re.finditer(r"([^.()]+)\(([^()]*)\)", hierarchy)]
    return ".".join(p for p in parts if p not in ("SELF", "UNKNOWN_INSTANCE"))


def _script_tap_graph(module: torch.jit.ScriptModule, layer: str | None, source: str) -> tuple[Any, str]:
    """A copy of the module's inlined forward graph that returns ``(output, tapped value)``."""
    graph = module.forward.inlined_graph  # a fresh, inlined copy: the module is not changed
    nodes = list(graph.nodes())
    paths = {n: script_module_path(n) for n in nodes}
    if layer is None:
        linears = [n for n in nodes if n.kind() in ("aten::linear", "aten::addmm")]
        if not linears:
            raise ModelError("model graph has no linear layer; set model.feature_layer", path=source)
        last = linears[-1]
        tap = last.inputsAt(0 if last.kind() == "aten::linear" else 1)
        name = f"{paths[last] or 'linear'}:input"
    else:
        target, take_input = split_layer(layer)
        inside = [n for n in nodes if paths[n] == target or paths[n].startswith(target + ".")]
        if not inside:
            names = [n for n, _ in module.named_modules() if n]
            raise _no_such_layer(layer, names, source)
        members = set(inside)
        tensors = lambda values: [v for v in values if v.type().kind() == "TensorType"]  # noqa: E731
        if take_input:
            tap = next((v for n in inside for v in tensors(n.inputs()) if v.node() not in members), None)
        else:
            # the module's result: the last tensor it makes that is used outside it
            produced = [v for n in inside for v in tensors(n.outputs())]
            used_outside = [v for v in produced
                            if any(u.user not in members for u in v.uses())]
            tap = (used_outside or produced or [None])[-1]
        if tap is None:
            raise ModelError(f"feature_layer {layer!r}: no tensor {'enters' if take_input else 'leaves'} "
                             f"that module in the traced graph", path=source)
        name = layer
    graph.registerOutput(tap)
    graph.makeMultiOutputIntoTuple()
    return graph, name


def _module_paths(node: fx.Node) -> list[str]:
    stack = node.meta.get("nn_module_stack") or {}
    return [v[0] for v in stack.values()]


def _module_path(node: fx.Node) -> str:
    paths = _module_paths(node)
    return paths[-1] if paths else ""


def _in_module(node: fx.Node, name: str) -> bool:
    return node.op == "call_function" and name in _module_paths(node)


def _preview(names: list[str], k: int = 12) -> str:
    return ", ".join(names[:k]) + (f", ... ({len(names)} in all)" if len(names) > k else "")
