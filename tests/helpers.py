"""Small builders shared by tests (data files, tiny models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn


class TinyNet(nn.Module):
    """A tiny CNN for 8×8 grey images with a named penultimate layer."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 6)
        self.head = nn.Linear(6, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = torch.flatten(self.pool(x), 1)
        return self.head(torch.relu(self.fc(x)))


def make_tiny_net(n_classes: int = 3, seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(n_classes).eval()


#: brightness levels of :func:`brightness_images`: level L's pixels are uniform in [80 L, 80 L + 90)
LEVEL_STEP, LEVEL_SPREAD = 80, 90


def brightness_images(rng: np.random.Generator, levels: np.ndarray, shape=(8, 8)) -> np.ndarray:
    """8-bit grey images whose mean brightness says their level (0, 1 or 2): data a model can learn."""
    levels = np.asarray(levels)
    noise = rng.integers(0, LEVEL_SPREAD, size=(len(levels), *shape))
    return (noise + LEVEL_STEP * levels.reshape(-1, *([1] * len(shape)))).astype(np.uint8)


def make_learned_net(n_classes: int = 3, seed: int = 0) -> TinyNet:
    """A TinyNet that has learned the brightness levels of :func:`brightness_images` (input scaled to
    [0, 1]): conv channel 0 averages the pixels, fc unit 0 averages that channel, and the head cuts
    it at the midpoints between the levels. The other weights stay random (``seed``), so two seeds
    are two different models that both beat chance."""
    net = make_tiny_net(n_classes, seed)
    coverage = 484 / (64 * 9)  # a 3×3 mean with zero padding over 8×8 keeps this share of the mean
    level = coverage * (LEVEL_STEP * np.arange(n_classes) + (LEVEL_SPREAD - 1) / 2) / 255
    cuts = (level[1:] + level[:-1]) / 2
    slope = 50.0
    with torch.no_grad():
        net.conv.weight[0] = 1 / 9
        net.conv.bias[0] = 0.0
        net.fc.weight[0] = 0.0
        net.fc.weight[0, :4] = 0.25  # the 2×2 pooled cells of channel 0
        net.fc.bias[0] = 0.0
        net.head.weight.zero_()
        net.head.weight[:, 0] = torch.tensor(slope * np.arange(n_classes), dtype=torch.float32)
        net.head.bias.copy_(torch.tensor(-slope * np.concatenate([[0.0], np.cumsum(cuts)]), dtype=torch.float32))
    return net


#: examples that :class:`CountingNet` instances have run on, in this process
FORWARD_CALLS = {"examples": 0}


class CountingNet(TinyNet):
    """TinyNet that counts the examples it runs on (:data:`FORWARD_CALLS`): a run that says it did
    not call the model can be checked."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        FORWARD_CALLS["examples"] += int(x.shape[0])
        return super().forward(x)


def make_counting_net(n_classes: int = 3, seed: int = 0) -> CountingNet:
    torch.manual_seed(seed)
    return CountingNet(n_classes).eval()


class SlowNet(TinyNet):
    """TinyNet that takes ``SLOW_NET_S`` (environment, default 0.5) seconds per forward pass: a model
    slow enough for a test to interrupt a run while it is inside a stage."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os
        import time

        time.sleep(float(os.environ.get("SLOW_NET_S", "0.5")))
        return super().forward(x)


def make_slow_net(n_classes: int = 3, seed: int = 0) -> SlowNet:
    torch.manual_seed(seed)
    return SlowNet(n_classes).eval()


def write_npz(path: Path, n: int = 30, *, seed: int = 0, shape=(8, 8), n_classes: int = 3,
              with_ids: bool = True, prefix: str = "ex", learnable: bool = False) -> np.ndarray:
    """Random 8-bit images and labels; ``learnable``: the image's brightness level
    (:func:`brightness_images`), which :func:`make_learned_net` predicts, is the label but for 20%
    of the examples, whose label is another one (a good model, not a perfect one)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = rng.integers(0, n_classes, size=n)
    if learnable:
        x = brightness_images(rng, y, shape)
        wrong = rng.random(n) < 0.2
        y = np.where(wrong, (y + rng.integers(1, n_classes, size=n)) % n_classes, y)
    ids = np.array([f"{prefix}{i}" for i in range(n)])
    arrays = {"x": x, "y": y}
    if with_ids:
        arrays["id"] = ids
    np.savez(path, **arrays)
    return ids


def write_metadata(path: Path, ids, *, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pd.DataFrame({"id": ids, "colour": rng.choice(["red", "blue"], len(ids)),
                  "site": rng.choice(["a", "b", "c"], len(ids))}).to_csv(path, index=False)


def write_project(tmp: Path, *, model: str = "pt2", n: int = 30) -> dict:
    """A complete small project: train/val/test .npz, metadata.csv, model file, config dict.

    Labels are brightness levels and the model has learned them (:func:`make_learned_net`), so it
    beats chance as a real model does, and the implied ``better-than-chance`` passes.
    """
    ids = []
    for i, split in enumerate(["train", "val", "test"]):
        ids.extend(write_npz(tmp / f"{split}.npz", n, seed=i, prefix=f"{split}-", learnable=True))
    write_metadata(tmp / "metadata.csv", ids)
    net = make_learned_net()
    model_cfg: dict = {"input": {"scale": 255.0}}
    if model == "pt2":
        ep = torch.export.export(net, (torch.zeros(2, 1, 8, 8),),
                                 dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        torch.export.save(ep, str(tmp / "model.pt2"))
        model_cfg["path"] = "model.pt2"
    elif model == "torchscript":
        torch.jit.script(net).save(str(tmp / "model.pt"))
        model_cfg["path"] = "model.pt"
    elif model == "factory":
        torch.save(net.state_dict(), tmp / "weights.pt")
        model_cfg.update({"factory": "tests.helpers:make_tiny_net", "weights": "weights.pt"})
    return {"model": model_cfg,
            "data": {"train": "train.npz", "val": "val.npz", "test": "test.npz", "metadata": "metadata.csv"},
            "features": {"batch_size": 8, "cache_dir": "cache"},
            "mlflow": {"enabled": False}}


# --------------------------------------------------------------------------- models in an MLflow registry
#: analysis options turned down: a gate on a tiny project in a few seconds
QUICK_ANALYSIS = {"explain": False, "sanity_check": False, "interventions": False, "auto_attributes": False}


def write_registry_project(root: Path, *, experiment: str, tracking_uri: str | None = None, n: int = 60,
                           assertions: list | None = None, name: str = "config.yaml") -> Path:
    """A small project for gating models from an MLflow registry; returns its config path.

    Labels are brightness levels (with 10% flipped), which the tiny nets' features tell apart, so
    the sparse layer uses features and a monitoring reference has activations to compare; models
    that learned them (:func:`make_learned_net`, the README's trained stand-ins) beat chance.
    """
    import yaml

    raw = write_project(root, n=n)
    for i, split in enumerate(("train", "val", "test")):
        with np.load(root / f"{split}.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        rng = np.random.default_rng(10 + i)
        level = rng.integers(0, 3, len(arrays["y"]))
        arrays["x"] = (rng.integers(0, 90, size=arrays["x"].shape) + 80 * level[:, None, None]).astype(np.uint8)
        flip = rng.random(len(level)) < 0.1
        arrays["y"] = np.where(flip, (level + 1) % 3, level)
        np.savez(root / f"{split}.npz", **arrays)
    raw["sparse"] = {"n_lambdas": 10, "solver": "fista", "max_epochs": 50, "tol": 1e-3}  # fast, rough
    raw["analysis"] = dict(QUICK_ANALYSIS)
    raw["mlflow"] = {"experiment": experiment, **({"tracking_uri": tracking_uri} if tracking_uri else {})}
    raw["assertions"] = list(assertions or [])
    (root / name).write_text(yaml.safe_dump(raw))
    return root / name


def register_model(tracking_uri: str, name: str, net: nn.Module, *, alias: str | None = None,
                   serialization_format: str = "pt2") -> str:
    """Log ``net`` with ``mlflow.pytorch`` and register it as a new version of ``name``; return the version."""
    import mlflow
    import mlflow.pytorch

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("registry-training")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("registry-training")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)  # the fluent API is the only way to log a model
    try:
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.pytorch.log_model(net, name="model", registered_model_name=name,
                                            input_example=np.zeros((1, 1, 8, 8), np.float32),
                                            serialization_format=serialization_format,
                                            pip_requirements=["torch"])  # no requirement inference: seconds
    finally:
        mlflow.set_tracking_uri(previous)
    version = str(info.registered_model_version)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return version


def mkdocs_config(root: Path) -> dict:
    """``root/mkdocs.yml``, read safely: its ``!!python/name:`` tags (the Mermaid fence's formatter)
    stay strings instead of naming Python objects."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)
    return yaml.load((root / "mkdocs.yml").read_text(), Loader=Loader)  # noqa: S506 (a SafeLoader)
