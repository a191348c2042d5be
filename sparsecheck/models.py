"""Loading classifiers from the places people keep them.

One :func:`load_model` call per source, each giving back a :class:`Model` (an ``nn.Module`` or a
TorchScript module that returns logits, plus where it came from and, when the source knows it,
the preprocessing its weights expect):

=================  ===========================================================================
source             what is read
=================  ===========================================================================
``path``           a ``torch.export`` program (``.pt2``) or a TorchScript file (scripted or
                   traced, ``.pt``/``.pth``/``.ts``)
``factory``        ``package.module:function`` returning an ``nn.Module``, plus ``weights`` (a
                   state_dict file)
``torchvision``    a torchvision model name and weights enum member, through torchvision's own
                   weight cache (``$TORCH_HOME/hub/checkpoints``): downloaded when online,
                   refused with a clear message when :func:`offline` is on and it is not cached
``timm``           a timm model name plus ``weights`` (needs ``pip install sparsecheck[timm]``)
``huggingface``    a local Hugging Face ``transformers`` image-classification directory
                   (``config.json`` + weights; needs ``pip install sparsecheck[huggingface]``)
``uri``            an MLflow model logged with the ``mlflow.pytorch`` flavour:
                   ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``runs:/RUN_ID/PATH`` or
                   ``models:/m-...``, downloaded from the tracking server and loaded with
                   ``mlflow.pytorch.load_model`` (see :mod:`sparsecheck.tracking.registry`).
                   That flavour unpickles (or loads a ``torch.export`` program): load models
                   only from your own tracking server
=================  ===========================================================================

A model that fails to load does not print third-party warnings or log lines before the one-line\nerror: they go to the debug log.

Examples
--------
>>> import torch, tempfile, os
>>> from tests.helpers import make_tiny_net
>>> d = tempfile.mkdtemp()
>>> torch.save(make_tiny_net().state_dict(), os.path.join(d, "w.pt"))
>>> m = load_model(factory="tests.helpers:make_tiny_net", weights=os.path.join(d, "w.pt"))
>>> m.kind, m.module(torch.zeros(2, 1, 8, 8)).shape
('factory', torch.Size([2, 3]))
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from sparsecheck._runtime import one_line as _one_line
from sparsecheck.errors import ModelError
from sparsecheck.model_archives import check_pt2_archive, check_torchscript_archive, warn_unpickling
from sparsecheck.tracking.registry import download_model, resolve_model_uri

logger = logging.getLogger(__name__)

__all__ = ["Model", "load_model", "fingerprint_module", "offline", "OFFLINE_ENV"]

#: set to 1 to forbid any download of model weights (torchvision); Hugging Face's own
#: ``HF_HUB_OFFLINE`` is honoured as well
OFFLINE_ENV = "SPARSECHECK_OFFLINE"


@dataclass
class Model:
    """A loaded classifier.

    Attributes
    ----------
    module : nn.Module
        Runs ``logits = module(x)`` (or returns an object with ``.logits``). For ``.pt2`` files
        this is the exported program's graph module; for TorchScript files the script module.
    kind : {"export", "torchscript", "factory", "torchvision", "timm", "huggingface", "mlflow", "module"}
    source : str
        Path, factory or model name it came from.
    program : torch.export.ExportedProgram or None
        The exported program of a ``.pt2`` file, used to tap feature layers in its graph.
    preprocessing : dict or None
        What the weights expect, when the source says so: keys of ``model.input`` (``resize``,
        ``crop``, ``size``, ``mean``, ``std``, ``scale``). Used when the config gives no
        ``model.input``.
    origin : ModelOrigin or None
        Where an MLflow model came from (registered name, version, alias, run, logged model id);
        see :class:`sparsecheck.tracking.registry.ModelOrigin`.
    tokenizer : transformers tokenizer or None
        A text model's tokenizer (:mod:`sparsecheck.text.models`); None for an image model.
    class_names : list of str or None
        The class names the model declares (a Hugging Face ``id2label`` that is not the
        ``LABEL_k`` placeholder), used when the config gives none.
    """

    module: nn.Module
    kind: str
    source: str
    program: Any = None
    preprocessing: dict[str, Any] | None = None
    origin: Any = None
    tokenizer: Any = None
    class_names: list[str] | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_module(self.module)
        return self._fingerprint


def fingerprint_module(module: nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            h.update(str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def offline() -> bool:
    """True when weights must not be downloaded (``SPARSECHECK_OFFLINE`` or ``HF_HUB_OFFLINE`` set)."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in (OFFLINE_ENV, "HF_HUB_OFFLINE"))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record_message(record: logging.LogRecord) -> str:
    """A third-party log record's message, also when its format and arguments do not match (torch
    2.x logs "... of type %s after initial failure: %s" with one argument): never a TypeError."""
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):
        return f"{record.msg} {record.args!r}"


@contextlib.contextmanager
def _quiet_loading(what: str = "loading the model") -> Iterator[None]:
    """Keep torch's and transformers' warnings and log lines out of the user's one-line errors.

    A corrupt file makes torch log a dozen-line traceback before it raises; the caller's one-line
    error says what matters, so on failure they go to our DEBUG log (``-v`` shows them). After a
    successful load, warnings are issued again as if never caught and torch's log lines are passed on.
    """
    collect = _Collect()
    # torch's logging gives "torch" and some sub-loggers ("torch.export") stderr handlers of their own
    loggers = [lg for name, lg in list(logging.Logger.manager.loggerDict.items())
               if (name == "torch" or name.startswith("torch.")) and isinstance(lg, logging.Logger) and lg.handlers]
    saved = [(lg, lg.handlers[:]) for lg in loggers]
    for lg in loggers:
        lg.handlers = [collect]
    failed = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
            failed = False
        finally:
            for lg, handlers in saved:
                lg.handlers = handlers
            for record in collect.records:
                level = logging.DEBUG if failed else min(record.levelno, logging.WARNING)
                logger.log(level, "%s: torch logged: %s", what, _record_message(record))
            if failed:
                for w in caught:
                    logger.debug("%s: %s: %s", what, w.category.__name__, w.message)
    for w in caught:  # reached only after a successful load: as if never caught
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def load_model(*, path: str | Path | None = None, factory: str | None = None,
               weights: str | Path | None = None, factory_kwargs: dict | None = None,
               torchvision: str | None = None, torchvision_weights: str = "DEFAULT",
               timm: str | None = None, huggingface: str | Path | None = None, uri: str | None = None,
               tracking_uri: str | None = None, trust_pickle: bool = False,
               tokenizer: str | Path | None = None) -> Model:
    """Load a classifier from exactly one source (see the module docstring).

    Parameters
    ----------
    path : path to a ``.pt2`` exported program or a TorchScript file.
    factory : ``"package.module:function"`` returning an ``nn.Module``; ``weights`` is its
        state_dict and ``factory_kwargs`` its keyword arguments.
    torchvision : a torchvision model name (``"resnet18"``); ``torchvision_weights`` names the
        weights enum member (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or ``"none"`` for random weights.
    timm : a timm model name; ``weights`` is its state_dict, ``factory_kwargs`` go to
        ``timm.create_model`` (e.g. ``num_classes``).
    huggingface : a local directory saved by ``save_pretrained`` of a ``transformers`` image
        classifier, or of a text classifier (``AutoModelForSequenceClassification``) with its
        tokenizer (:mod:`sparsecheck.text.models`).
    uri : an MLflow model URI (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
        ``runs:/RUN_ID/PATH``, ``models:/m-...``) of a model logged with ``mlflow.pytorch``,
        resolved and downloaded against ``tracking_uri`` (see
        :func:`~sparsecheck.tracking.resolve_tracking_uri`). The flavour unpickles: load
        only models from your own tracking server.
    trust_pickle : load a ``path`` whose archive holds pickles (``use_pickle`` weights or constants,
        sample inputs beyond tensors, pickled extra files, AOTInductor code), which loading runs as
        code; refused without it (:mod:`sparsecheck.model_archives`). Logs a warning when used.
        For a text model: load ``.bin`` weights that torch's ``weights_only`` unpickler refuses.
    tokenizer : a text model's tokenizer (a ``save_pretrained`` directory or a ``tokenizer.json``)
        for a ``factory`` or an MLflow ``pytorch`` model (token ids in, logits out), or instead of
        the one saved in a ``huggingface`` directory.

    Raises
    ------
    ModelError
        naming the file or source and what was wrong with it.
    TrackingError
        for ``uri``: exit 2 when the name, version, alias, run or logged model is not there, exit 3
        when the tracking server cannot be reached.
    """
    given = [s for s in (path, factory, torchvision, timm, huggingface, uri) if s]
    if len(given) != 1:
        raise ModelError("give exactly one of a model file, a factory, a torchvision name, a timm name, a "
                         "Hugging Face directory or an MLflow model URI")
    if tokenizer is not None and (path or torchvision or timm):
        raise ModelError("model.tokenizer goes with a text model: model.huggingface, model.factory or model.uri")
    if uri is not None:
        return _load_mlflow(str(uri), tracking_uri, trust_pickle=trust_pickle, tokenizer=tokenizer)
    with _quiet_loading():
        if path is not None:
            return _load_file(Path(path), trust_pickle=trust_pickle)
        if factory is not None:
            return _with_tokenizer(_load_factory(factory, weights, factory_kwargs or {}), tokenizer)
        if torchvision is not None:
            return _load_torchvision(str(torchvision), torchvision_weights)
        if timm is not None:
            return _load_timm(str(timm), weights, factory_kwargs or {})
        return _load_huggingface(Path(str(huggingface)), tokenizer=tokenizer, trust_pickle=trust_pickle)


def _with_tokenizer(model: Model, tokenizer: str | Path | None) -> Model:
    """A factory (or MLflow ``pytorch``) model with the text tokenizer the config names."""
    if tokenizer is None:
        return model
    from sparsecheck.text.models import load_tokenizer, text_class_names

    model.tokenizer = load_tokenizer(tokenizer)
    model.class_names = text_class_names(model.module)
    return model


# --------------------------------------------------------------------------- files
def _load_file(path: Path, *, trust_pickle: bool = False) -> Model:
    """Load a ``.pt2`` or TorchScript file once its archive is checked for pickles
    (:mod:`sparsecheck.model_archives`). The checked file stays open for the load, so the bytes
    loaded are the bytes checked even if the path is swapped in between."""
    if not path.is_file():
        raise ModelError("model file not found", path=path)
    with open(path, "rb") as fh:
        return _load_checked_file(path, fh, trust_pickle)


def _load_checked_file(path: Path, fh: Any, trust_pickle: bool) -> Model:
    if path.suffix == ".pt2":
        check_pt2_archive(fh, trust_pickle=trust_pickle, name=path)
        fh.seek(0)
        try:
            program = torch.export.load(fh)
        except Exception as exc:
            raise ModelError(f"not a torch.export program ({_one_line(exc)}); save one with "
                             f"torch.export.save(torch.export.export(model, (x,)), path)", path=path) from exc
        return Model(program.module(), "export", str(path), program)
    check_torchscript_archive(fh, trust_pickle=trust_pickle, name=path)
    fh.seek(0)
    try:
        module = torch.jit.load(fh, map_location="cpu")
    except Exception as exc:
        raise ModelError(_not_torchscript_reason(path), path=path) from exc
    module.eval()
    return Model(module, "torchscript", str(path))


def _not_torchscript_reason(path: Path) -> str:
    """Say what the file is instead, when we can tell: users often pass a state_dict or a pickle."""
    if not zipfile.is_zipfile(path):
        return ("not a TorchScript file (not a zip archive); give a .pt2 from torch.export.save or a "
                "TorchScript .pt from torch.jit.script/trace(...).save")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return ("not a TorchScript file: it looks like a whole model pickled with torch.save(model); "
                "give model.factory (the code that builds it) with model.weights (its state_dict), or "
                "re-save it with torch.jit.script(model).save(...) or torch.export.save")
    if isinstance(obj, dict):
        return ("not a TorchScript file but a state_dict: give it as model.weights together with "
                "model.factory (or model.timm / model.torchvision) that builds the network")
    return f"not a TorchScript file (it holds a {type(obj).__name__})"


# --------------------------------------------------------------------------- MLflow
def _load_mlflow(uri: str, tracking_uri: str | None, *, trust_pickle: bool = False,
                 tokenizer: str | Path | None = None) -> Model:
    """Resolve the URI, download the model and load it with MLflow's own ``mlflow.pytorch`` loader.

    A model saved in MLflow's ``pt2`` format (a ``torch.export`` program, MLflow 3's default) is
    checked for pickles as a ``.pt2`` file is (:func:`~sparsecheck.model_archives.check_pt2_archive`),
    and also read as the program itself, so feature layers inside its graph can be tapped and its
    weights randomised for the sanity check. A model in MLflow's ``pickle`` format is unpickled
    whole, with a warning: the flavour's own choice, documented above.
    """
    import shutil
    import tempfile


    origin = resolve_model_uri(uri, tracking_uri)
    tmp = Path(tempfile.mkdtemp(prefix="sparsecheck-mlflow-model-"))
    try:
        local = download_model(origin, tmp)
        mlflow_pytorch = _import_mlflow_pytorch()
        from mlflow.models import Model as MlflowModel

        try:
            flavors = MlflowModel.load(str(local)).flavors
        except Exception as exc:
            raise ModelError(f"not an MLflow model (no readable MLmodel file: {_one_line(exc)})", path=uri) from exc
        if "transformers" in flavors and "pytorch" not in flavors:  # a text model: its saved directories
            return _load_mlflow_transformers(uri, local, flavors["transformers"], origin, tokenizer=tokenizer,
                                             trust_pickle=trust_pickle, download=tmp)
        if "pytorch" not in flavors:
            raise ModelError(f"logged with the {', '.join(sorted(flavors)) or 'no'} flavour, not mlflow.pytorch or "
                             "mlflow.transformers; log it with mlflow.pytorch.log_model", path=uri)
        data = local / str(flavors["pytorch"].get("model_data", "data"))
        if (data / "model.pt2").is_file():
            check_pt2_archive(data / "model.pt2", trust_pickle=trust_pickle, name=f"{uri} (model.pt2)")
        else:
            warn_unpickling(uri, "the whole model (mlflow.pytorch's pickle format)")
        with _quiet_loading(f"loading {uri}"):
            try:
                module = mlflow_pytorch.load_model(str(local))
            except Exception as exc:
                raise ModelError(f"mlflow.pytorch cannot load it: {_one_line(exc)}", path=uri) from exc
            program = None
            if (data / "model.pt2").is_file():
                program = torch.export.load(str(data / "model.pt2"))
        keep = bool(flavors["pytorch"].get("code"))  # its code folder went onto sys.path
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    if not isinstance(module, nn.Module):
        raise ModelError(f"mlflow.pytorch gave back a {type(module).__name__}, not an nn.Module", path=uri)
    if program is None:
        module.eval()
    logger.info("loaded %s from %s (%s)", uri, origin.tracking_uri, origin.label)
    return _with_tokenizer(Model(module, "mlflow", uri, program, origin=origin), tokenizer)


def _load_mlflow_transformers(uri: str, local: Path, flavor: Any, origin: Any, *, tokenizer: str | Path | None,
                              trust_pickle: bool, download: Path) -> Model:
    """A text model logged with ``mlflow.transformers``: its model and tokenizer directories read
    as a ``model.huggingface`` directory is (no custom code, no pickles); the download is removed
    once they are loaded."""
    import shutil

    from sparsecheck.text.models import find_transformers_dirs, load_text_huggingface

    try:
        model_dir, tok_dir = find_transformers_dirs(local, flavor)
        with _quiet_loading(f"loading {uri}"):
            module, tok, names = load_text_huggingface(model_dir, tokenizer=tokenizer or tok_dir,
                                                       trust_pickle=trust_pickle)
    except ModelError as exc:
        raise ModelError(f"{uri}: {exc}") from exc
    finally:
        shutil.rmtree(download, ignore_errors=True)
    logger.info("loaded %s from %s (%s, transformers flavour)", uri, origin.tracking_uri, origin.label)
    return Model(module, "mlflow", uri, origin=origin, tokenizer=tok, class_names=names)


def _import_mlflow_pytorch() -> Any:
    """``mlflow.pytorch``, imported without the root log handler it installs (its Lightning autolog
    module configures the root logger on import, which would print every log line twice)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import mlflow.pytorch

    root.handlers[:] = handlers
    root.setLevel(level)
    return mlflow.pytorch


# --------------------------------------------------------------------------- factory and weights
def _load_factory(factory: str, weights: str | Path | None, kwargs: dict) -> Model:
    if ":" not in factory:
        raise ModelError(f"factory must look like 'package.module:function', got {factory!r}")
    mod_name, fn_name = factory.split(":", 1)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"cannot import factory {factory!r}: {exc}") from exc
    try:
        module = fn(**kwargs)
    except Exception as exc:
        raise ModelError(f"factory {factory!r} failed: {_one_line(exc)}") from exc
    if not isinstance(module, nn.Module):
        raise ModelError(f"factory {factory!r} returned {type(module).__name__}, not an nn.Module")
    if weights is not None:
        _load_state_dict(module, Path(weights))
    module.eval()
    return Model(module, "factory", factory)


def _load_state_dict(module: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ModelError("weights file not found", path=path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read state_dict: {_one_line(exc)}", path=path) from exc
    for key in ("state_dict", "model_state_dict", "model"):  # common checkpoint layouts
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"holds a {type(state).__name__}, not a state_dict", path=path)
    if state and all(str(k).startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(f"state_dict does not fit the model: {' '.join(first[:3])}", path=path) from exc


# --------------------------------------------------------------------------- torchvision
def _load_torchvision(name: str, weights_name: str) -> Model:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError) as exc:
        raise ModelError(f"unknown torchvision model {name!r} (see torchvision.models.list_models())") from exc
    if weights_name.lower() == "none":
        module = torchvision.models.get_model(name, weights=None)
        return Model(module.eval(), "torchvision", f"torchvision:{name}:none")
    try:
        weights = enum.DEFAULT if weights_name == "DEFAULT" else enum[weights_name]
    except KeyError as exc:
        raise ModelError(f"torchvision model {name!r} has no weights {weights_name!r} "
                         f"(choices: {[w.name for w in enum]})") from exc
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and offline():
        raise ModelError(f"weights {weights} are not in torchvision's cache and {OFFLINE_ENV} forbids "
                         f"downloading them; put {cached.name} there (or unset {OFFLINE_ENV} on a machine "
                         f"that is online; TORCH_HOME chooses the cache)", path=cached)
    if not cached.is_file():
        logger.info("downloading %s into torchvision's cache %s", weights, cached.parent)
    categories = weights.meta.get("categories") or []
    module = torchvision.models.get_model(name, weights=None, num_classes=len(categories) or 1000)
    try:
        # torchvision's own loader: reads the cache, downloads (and checks the hash) when missing
        state = weights.get_state_dict(progress=logger.isEnabledFor(logging.INFO), check_hash=True)
    except Exception as exc:
        raise ModelError(f"cannot get weights {weights}: {_one_line(exc)}", path=cached) from exc
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"cached weights {weights} do not fit {name}: {_one_line(exc)}", path=cached) from exc
    module.eval()
    return Model(module, "torchvision", f"torchvision:{name}:{weights.name}",
                 preprocessing=_torchvision_preprocessing(weights))


def _torchvision_preprocessing(weights: Any) -> dict[str, Any] | None:
    try:
        t = weights.transforms()
    except Exception:  # pragma: no cover - every classification weight has transforms
        return None
    resize = getattr(t, "resize_size", None)
    crop = getattr(t, "crop_size", None)
    out: dict[str, Any] = {"scale": 255.0, "mean": list(t.mean), "std": list(t.std)}
    if resize:
        out["resize"] = int(resize[0])
    if crop:
        out["crop"] = int(crop[0])
    return out


# --------------------------------------------------------------------------- timm
def _load_timm(name: str, weights: str | Path | None, kwargs: dict) -> Model:
    try:
        import timm
    except ImportError as exc:
        raise ModelError("model.timm needs the timm package: pip install 'sparsecheck[timm]'") from exc
    try:
        module = timm.create_model(name, pretrained=False, **kwargs)
    except Exception as exc:
        raise ModelError(f"timm cannot create {name!r}: {_one_line(exc)}") from exc
    if weights is not None:
        _load_state_dict(module, Path(weights))
    else:
        logger.warning("model.timm %s without model.weights: its weights are random", name)
    module.eval()
    pre = None
    try:
        cfg = timm.data.resolve_data_config({}, model=module)
        size = int(cfg["input_size"][-1])
        pre = {"scale": 255.0, "mean": list(cfg["mean"]), "std": list(cfg["std"]), "crop": size,
               "resize": int(round(size / float(cfg.get("crop_pct") or 1.0)))}
    except Exception as exc:  # pragma: no cover - depends on the timm version
        logger.debug("no preprocessing from timm for %s: %s", name, exc)
    return Model(module, "timm", f"timm:{name}", preprocessing=pre)


# --------------------------------------------------------------------------- Hugging Face
def _load_huggingface(directory: Path, *, tokenizer: str | Path | None = None, trust_pickle: bool = False) -> Model:
    if not directory.is_dir() or not (directory / "config.json").is_file():
        raise ModelError("not a Hugging Face model directory (no config.json)", path=directory)
    from sparsecheck.text.models import is_text_model_dir, load_text_huggingface

    if tokenizer is not None or is_text_model_dir(directory):
        module, tok, names = load_text_huggingface(directory, tokenizer=tokenizer, trust_pickle=trust_pickle)
        return Model(module, "huggingface", str(directory), tokenizer=tok, class_names=names)
    try:
        import transformers
    except ImportError as exc:
        raise ModelError("model.huggingface needs transformers: pip install 'sparsecheck[huggingface]'") from exc
    try:
        module = transformers.AutoModelForImageClassification.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"transformers cannot load an image classifier from it: {_one_line(exc)}",
                         path=directory) from exc
    module.eval()
    return Model(module, "huggingface", str(directory), preprocessing=_hf_preprocessing(directory))


def _hf_preprocessing(directory: Path) -> dict[str, Any] | None:
    import json

    cfg_path = directory / "preprocessor_config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable processor config: {exc}", path=cfg_path) from exc
    out: dict[str, Any] = {"scale": 1.0 / float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True)
                           else 1.0}
    if cfg.get("do_normalize", True) and cfg.get("image_mean") is not None:
        out["mean"], out["std"] = list(cfg["image_mean"]), list(cfg["image_std"])
    size = cfg.get("size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    crop = cfg.get("crop_size") if cfg.get("do_center_crop") else None
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    if cfg.get("do_resize", True):
        if "shortest_edge" in size:
            out["resize"] = int(size["shortest_edge"])
        elif "height" in size and "width" in size:
            out["size"] = [int(size["height"]), int(size["width"])]
    if crop and "height" in crop:
        out["crop"] = int(crop["height"])
    return out

