"""Deep-feature extraction: the input of the model's last ``nn.Linear`` (or any named layer).

Features are computed batch by batch under ``torch.inference_mode`` and streamed into a
memory-mapped ``.npy`` file, so a dataset larger than RAM never has to fit in memory. Results are
cached on disk, keyed by fingerprints of the model weights, the data, the layer and the input
spec: a second run with the same inputs reads the cache instead of running the model.

Examples
--------
>>> import numpy as np, torch.nn as nn
>>> from sparsecheck.data import ImageDataset, InputSpec
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
>>> data = ImageDataset.from_arrays(np.zeros((10, 4, 4), np.uint8), np.zeros(10, int), name="toy")
>>> fs = extract_features(net, data, InputSpec(), batch_size=4, device="cpu")
>>> fs.features.shape, fs.logits.shape, fs.layer
((10, 5), (10, 2), '3:input')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from sparsecheck._runtime import note_forward, progress, resolve_device
from sparsecheck.data import ImageDataset, InputSpec, NumWorkers, resolve_num_workers, stack_images
from sparsecheck.errors import DataError, ModelError, ParameterError
from sparsecheck.features.model_input import batch_length, call_model, output_tensor
from sparsecheck.models import Model
from sparsecheck.sparse.distributed import Ranks

logger = logging.getLogger(__name__)

__all__ = ["FeatureSet", "FeatureExtractor", "Extracted", "extract_features", "extract_to", "cache_path"]

#: version of the cache entries (in the precomputed-features layout since 2)
CACHE_FORMAT = 2


@dataclass
class FeatureSet:
    """Features of one dataset at one layer.

    Attributes
    ----------
    features : ndarray (n, d) float32 — possibly a read-only memory map
    logits : ndarray (n, n_classes) float32 — the model's own head on the same inputs
    ids, labels : the dataset's ids and labels (labels None when unlabeled)
    layer : str — resolved layer, e.g. ``"fc:input"`` or ``"avgpool"``
    from_cache : bool — True when read from the on-disk cache
    seconds : float — time spent computing (0 when read from cache)
    """

    features: np.ndarray
    logits: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    layer: str
    from_cache: bool = False
    seconds: float = 0.0
    cache_path: Path | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])


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

        def hook(_mod: nn.Module, inputs: tuple, output: Any) -> None:
            self._captured.append(inputs[0] if take_input else output_tensor(output))

        self._handles.append(named[target].register_forward_hook(hook))
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


# --------------------------------------------------------------------------- extraction + cache
def _cache_key(model: Model, dataset: ImageDataset, spec: InputSpec, layer: str | None, precision: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_FORMAT, model.fingerprint(), dataset.fingerprint(), layer or "",
                         repr(spec), precision]).encode())
    return h.hexdigest()[:20]


def cache_path(cache_dir: str | Path, model: Model | nn.Module, dataset: ImageDataset, spec: InputSpec, *,
               layer: str | None = None, precision: str = "fp32") -> Path:
    """Where :func:`extract_features` keeps the features of ``dataset`` in ``cache_dir``: a
    directory in the precomputed-features layout (:mod:`sparsecheck.data.precomputed`)."""
    if not isinstance(model, Model):
        model = Model(model, "module", type(model).__name__)
    return Path(cache_dir) / _cache_key(model, dataset, spec, layer, precision)


def extract_features(
    model: Model | nn.Module,
    dataset: ImageDataset,
    spec: InputSpec,
    *,
    layer: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    num_workers: NumWorkers = "auto",
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    desc: str | None = None,
    ranks: Ranks | None = None,
) -> FeatureSet:
    """Extract features (and logits) of ``dataset`` at ``layer``.

    Parameters
    ----------
    model : Model or nn.Module
    dataset : ImageDataset
    spec : InputSpec
        How images become model input.
    layer : str, optional
        Module name; default the input of the last ``nn.Linear``.
    batch_size : int
    num_workers : int or "auto"
        DataLoader workers decoding image files; ``"auto"`` is ``min(4, cpu count)`` for
        file-backed data and 0 (decode in this process) for in-memory arrays.
    device : "auto", "cpu" or "cuda[:N]"
    precision : {"fp32", "bf16"}
        ``"bf16"`` runs the forward pass under CUDA autocast (GPU only; features stored as float32).
    cache_dir : path, optional
        Where to keep features; a second call with the same model, data, layer and spec reads them
        back (memory-mapped) without running the model. Each entry is a directory in the
        precomputed-features layout (:mod:`sparsecheck.data.precomputed`).
    ranks : Ranks, optional
        The ranks of a ``torchrun`` job (:func:`~sparsecheck.sparse.distributed.ranks_from_env`):
        each extracts its shard of the rows into the cache entry (``cache_dir`` is required then).

    Returns
    -------
    FeatureSet
    """
    if not isinstance(model, Model):
        model = Model(model, "module", type(model).__name__)
    if precision not in ("fp32", "bf16"):
        raise ModelError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    ranks = ranks or Ranks()
    name = desc or dataset.name
    if cache_dir is None:
        if ranks.world_size > 1:
            raise ParameterError("The 'cache_dir' parameter is required when extracting across ranks: each rank "
                                 "writes its rows into the cache.", parameter="cache_dir")
        return _extract_in_memory(model, dataset, spec, layer=layer, batch_size=batch_size, device=device,
                                  num_workers=num_workers, precision=precision, name=name)
    path = cache_path(cache_dir, model, dataset, spec, layer=layer, precision=precision)
    cached = _read_cache(path, dataset)
    if ranks.broadcast(cached is not None):  # rank 0 decides, so every rank takes the same steps
        if cached is None:
            raise DataError(f"rank 0 found a complete cache entry that rank {ranks.rank} cannot read; every "
                            f"rank must see the same features.cache_dir", path=path)
        logger.info("features of %s read from cache %s (%d × %d)", name, path, *cached.features.shape)
        return cached
    written = extract_to(path, model, dataset, spec, layer=layer, batch_size=batch_size, device=device,
                         num_workers=num_workers, precision=precision, desc=name, ranks=ranks,
                         meta={"cache_key": path.name, "cache_format": CACHE_FORMAT})
    result = _read_cache(path, dataset)
    if result is None:
        raise DataError("the cache entry just written cannot be read back", path=path)
    result.from_cache, result.seconds = False, written.seconds
    return result


@dataclass
class Extracted:
    """What :func:`extract_to` wrote: the directory, the resolved layer, rows × dims and the time taken."""

    path: Path
    layer: str
    n: int
    dim: int
    seconds: float


def extract_to(
    directory: str | Path,
    model: Model | nn.Module,
    dataset: ImageDataset,
    spec: InputSpec,
    *,
    layer: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    num_workers: NumWorkers = "auto",
    precision: str = "fp32",
    desc: str | None = None,
    ranks: Ranks | None = None,
    meta: dict[str, Any] | None = None,
) -> Extracted:
    """Extract features and logits of ``dataset`` into ``directory`` (the precomputed-features layout).

    Batches stream into ``features.npy`` and ``logits.npy``, which are allocated on disk once the
    first batch gives their width, so memory stays bounded by a batch. With ``ranks`` (a
    ``torchrun`` job) every rank extracts its contiguous shard of the rows and writes exactly
    those rows of the shared files (:meth:`Ranks.shard`); nothing is gathered in one process.
    Rank 0 allocates the files and, once every rank has finished, writes ``y.npy``, ``id.npy``
    and ``meta.json``, then renames the temporary directory to ``directory``: an interrupted
    extraction leaves nothing that looks complete (and rank 0 removes what it can).

    Every rank must load the same model and data (checked by fingerprint) and see ``directory``'s
    parent on a shared filesystem.

    Returns
    -------
    Extracted
    """
    from sparsecheck.data.precomputed import finish_directory

    if not isinstance(model, Model):
        model = Model(model, "module", type(model).__name__)
    ranks = ranks or Ranks()
    directory = Path(directory)
    name = desc or dataset.name
    n = len(dataset)
    rows = ranks.shard(n)
    with ranks.together(f"loading the model and {name}"):
        dev = ranks.device(device)
        workers = resolve_num_workers(num_workers, dataset)
        ident = (model.fingerprint(), dataset.fingerprint(), n)
    idents = ranks.gather(ident)
    with ranks.together(f"checking that every rank reads the same model and {name}"):
        if ident != idents[0]:
            raise DataError(f"rank {ranks.rank} reads model/data with fingerprints {ident[:2]} ({n} examples) but "
                            f"rank 0 reads {idents[0][:2]} ({idents[0][2]}); every rank must read the same files")
    token = ranks.broadcast(f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp = directory.with_name(f".{directory.name}.tmp-{token}")
    if model.program is None:  # exported graphs are already in inference form (and refuse eval())
        model.module.eval()
    extractor = FeatureExtractor(model, layer, device=dev)
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                if precision == "bf16" and dev.type == "cuda" else contextlib.nullcontext())
    n_batches = -(-len(rows) // batch_size)
    start = time.perf_counter()
    done = False
    try:
        first = None
        with ranks.together(f"extracting the first batch of {name}"):
            if precision not in ("fp32", "bf16"):
                raise ModelError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
            extractor.open()
            batches = iter(progress(_batches(dataset, batch_size, workers, rows), total=n_batches,
                                    desc=f"features {name}", unit="batch", show=ranks.is_main))
            first = _forward(extractor, spec, dev, autocast, next(batches, None))
        dims = ranks.gather(None if first is None else (first[2].shape[1], first[1].shape[1]))  # (features, logits)
        with ranks.together(f"allocating the features of {name}"):
            known = sorted({d for d in dims if d is not None})
            if not known:
                raise ModelError(f"dataset {name!r} is empty")
            if len(known) > 1:
                raise ModelError(f"ranks got features of different widths {known} from the same model")
            dim, n_logits = known[0]
            if ranks.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                for file, width in (("features.npy", dim), ("logits.npy", n_logits)):
                    # a sparse file of the final size: the ranks fill their rows in place
                    allocated = np.lib.format.open_memmap(tmp / file, mode="w+", dtype=np.float32,
                                                          shape=(n, width))
                    del allocated
        with ranks.together(f"extracting {name}"):
            with _RowWriter(tmp / "features.npy") as feats_out, _RowWriter(tmp / "logits.npy") as logits_out:
                batch = first
                while batch is not None:
                    lo, logits, feats = batch
                    feats_out.write(lo, feats)
                    logits_out.write(lo, logits)
                    batch = _forward(extractor, spec, dev, autocast, next(batches, None))
        seconds = time.perf_counter() - start
        with ranks.together(f"finishing the features of {name}"):
            if ranks.is_main:
                if dataset.labels is not None:
                    np.save(tmp / "y.npy", np.asarray(dataset.labels, dtype=np.int64))
                np.save(tmp / "id.npy", dataset.ids.astype(str))
                finish_directory(tmp, directory, {
                    "n": n, "dim": dim, "n_logits": n_logits, "layer": extractor.layer_name,
                    "model_fingerprint": model.fingerprint(), "model_source": model.source,
                    "data_fingerprint": dataset.fingerprint(), "data_source": dataset.source,
                    "class_names": dataset.class_names, "input_spec": repr(spec), "precision": precision,
                    "world_size": ranks.world_size, "seconds": round(seconds, 3), **(meta or {})})
        done = True
    finally:
        extractor.close()
        if not done and ranks.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
    # every rank's own rows at debug level; the whole split once, from rank 0
    logger.debug("extracted rows %d-%d of %s", rows.start, rows.stop, name)
    if ranks.is_main:
        logger.info("extracted %s features of %s: %d × %d in %.2fs (%.0f images/s%s) into %s",
                    extractor.layer_name, name, n, dim, seconds, n / max(seconds, 1e-9),
                    f" over {ranks.world_size} ranks" if ranks.world_size > 1 else "", directory)
    return Extracted(directory, extractor.layer_name, n, dim, seconds)


def _forward(extractor: FeatureExtractor, spec: InputSpec, dev: torch.device, autocast: Any,
             item: tuple[int, np.ndarray] | None) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(offset, logits, features)`` of one batch as float32 arrays, or None at the end."""
    if item is None:
        return None
    lo, batch = item
    with torch.inference_mode(), autocast:
        logits, feats = extractor(spec.transform(batch, device=dev))
    return lo, logits.float().cpu().numpy(), feats.float().cpu().numpy()


class _RowWriter:
    """Writes rows of an existing ``.npy`` file in place (``os.pwrite`` of exactly their bytes).

    Byte-exact writes, not a memory map: ranks on different machines writing neighbouring rows of
    a file on a network filesystem never overwrite each other's half of a shared page. The file is
    synced on close, before rank 0 marks the directory complete.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read(fh)
            self.offset = fh.tell()
        self.path, self.shape, self.dtype = path, shape, dtype
        self.row_bytes = dtype.itemsize * int(np.prod(shape[1:]))
        self.fd = os.open(path, os.O_WRONLY)

    def __enter__(self) -> "_RowWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)

    def write(self, lo: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != tuple(self.shape[1:]) or lo < 0 or lo + rows.shape[0] > self.shape[0]:
            raise ModelError(f"rows {lo}..{lo + rows.shape[0]} of shape {rows.shape} do not fit {self.path.name} "
                             f"{tuple(self.shape)}")
        view = memoryview(rows).cast("B")
        pos = self.offset + lo * self.row_bytes
        while view:
            written = os.pwrite(self.fd, view, pos)
            view, pos = view[written:], pos + written


def _extract_in_memory(model: Model, dataset: ImageDataset, spec: InputSpec, *, layer: str | None, batch_size: int,
                       device: str | torch.device, num_workers: NumWorkers, precision: str, name: str) -> FeatureSet:
    """Extraction without a cache: features and logits of every batch into in-memory arrays."""
    dev = resolve_device(device)
    if model.program is None:
        model.module.eval()
    n = len(dataset)
    workers = resolve_num_workers(num_workers, dataset)
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                if precision == "bf16" and dev.type == "cuda" else contextlib.nullcontext())
    features: np.ndarray | None = None
    logits_out: np.ndarray | None = None
    start = time.perf_counter()
    with FeatureExtractor(model, layer, device=dev) as extractor:
        for item in progress(_batches(dataset, batch_size, workers), total=-(-n // batch_size),
                             desc=f"features {name}", unit="batch"):
            lo, logits, feats = _forward(extractor, spec, dev, autocast, item)  # type: ignore[misc]
            if features is None:
                features = np.empty((n, feats.shape[1]), dtype=np.float32)
                logits_out = np.empty((n, logits.shape[1]), dtype=np.float32)
            features[lo:lo + len(feats)] = feats
            logits_out[lo:lo + len(logits)] = logits  # type: ignore[index]
        layer_name = extractor.layer_name
    if features is None:
        raise ModelError(f"dataset {name!r} is empty")
    seconds = time.perf_counter() - start
    logger.info("extracted %s features of %s: %d × %d in %.2fs (%.0f images/s)", layer_name, name,
                n, features.shape[1], seconds, n / max(seconds, 1e-9))
    return FeatureSet(features, logits_out, dataset.ids, dataset.labels,  # type: ignore[arg-type]
                      layer_name, False, seconds)


def _read_cache(path: Path, dataset: ImageDataset) -> FeatureSet | None:
    """The cache entry at ``path`` for ``dataset``, or None when there is no complete, fitting one."""
    from sparsecheck.data.precomputed import META_FILE, load_features

    if not (path / META_FILE).is_file():
        return None
    try:
        stored = load_features(path)
    except DataError as exc:
        logger.warning("ignoring unreadable feature cache %s: %s", path, exc)
        return None
    if (stored.meta.get("cache_format") != CACHE_FORMAT or len(stored) != len(dataset)
            or stored.logits is None or not np.array_equal(stored.ids, dataset.ids)):
        return None
    return FeatureSet(stored.features, stored.logits, dataset.ids, dataset.labels, stored.meta.get("layer", ""),
                      True, 0.0, path)


def _batches(dataset: ImageDataset, batch_size: int, num_workers: int, rows: range | None = None):
    """``(offset, uint8 N×H×W×C batch)`` in order over ``rows`` (default all); DataLoader workers
    decode when ``num_workers > 0``.

    A file that cannot be decoded raises DataError naming it, also from a worker: the worker
    returns the failure as a value and it is raised here, instead of a wrapped worker traceback.
    """
    rows = range(len(dataset)) if rows is None else rows
    if num_workers <= 0:
        for lo in range(rows.start, rows.stop, batch_size):
            yield lo, dataset.batch(slice(lo, min(lo + batch_size, rows.stop)))
        return
    if not len(rows):
        return
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(_Images(dataset), rows), batch_size=batch_size, shuffle=False,
        num_workers=num_workers, collate_fn=_collate, persistent_workers=False)
    lo = rows.start
    for batch in loader:
        if isinstance(batch, _Failure):
            raise DataError(batch.message, path=batch.path)
        yield lo, batch
        lo += len(batch)


@dataclass(frozen=True)
class _Failure:
    """A DataError raised in a DataLoader worker, sent back as a value (picklable, no traceback)."""

    path: str | None
    message: str

    @classmethod
    def of(cls, exc: DataError) -> "_Failure":
        path = None if exc.path is None else str(exc.path)
        return cls(path, str(exc).removeprefix(f"{path}: ") if path else str(exc))


class _Images(torch.utils.data.Dataset):
    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray] | _Failure:
        try:
            return self.dataset._where(i), self.dataset.image(i)
        except DataError as exc:
            return _Failure.of(exc)


def _collate(items: list[tuple[str, np.ndarray] | _Failure]) -> np.ndarray | _Failure:
    for item in items:
        if isinstance(item, _Failure):
            return item
    try:
        return stack_images([img for _, img in items], [where for where, _ in items])  # type: ignore[misc]
    except DataError as exc:
        return _Failure.of(exc)
