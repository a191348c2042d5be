"""Small versions of the models users bring, saved each of the ordinary ways (the conformance suite).

Every builder is a ``package.module:function`` factory (``tests.zoo:resnet18``) taking
``num_classes`` and ``seed``, so the same network can be given as factory + state_dict, as a
``torch.export`` program, and as scripted or traced TorchScript.
"""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torchvision

SIZE = 32  # image side: small enough for the default test run


@dataclass
class Output:
    """What Hugging Face-style models return: an object whose ``.logits`` are the class scores."""

    logits: torch.Tensor


# a .pt2 holding this output type loads only where the type is registered, as torch.export requires
torch.export.register_dataclass(Output, serialized_type_name="tests.zoo.Output")


class LogitsNet(nn.Module):
    """A small CNN returning ``Output(logits=...)`` instead of a tensor."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> Output:
        return Output(self.classifier(torch.flatten(self.body(x), 1)))


def _seeded(build: Any, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build().eval()


def resnet18(num_classes: int = 3, seed: int = 0) -> nn.Module:
    return _seeded(lambda: torchvision.models.resnet18(num_classes=num_classes), seed)


def mobilenet_v3_small(num_classes: int = 3, seed: int = 0) -> nn.Module:
    return _seeded(lambda: torchvision.models.mobilenet_v3_small(num_classes=num_classes), seed)


def vit_tiny(num_classes: int = 3, seed: int = 0) -> nn.Module:
    return _seeded(lambda: torchvision.models.VisionTransformer(
        image_size=SIZE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=num_classes), seed)


def squeezenet1_1(num_classes: int = 3, seed: int = 0) -> nn.Module:
    return _seeded(lambda: torchvision.models.squeezenet1_1(num_classes=num_classes), seed)


def logits_net(num_classes: int = 3, seed: int = 0) -> nn.Module:
    return _seeded(lambda: LogitsNet(num_classes), seed)


#: name → (factory, feature_layer the config needs: None for the default, the input of the last
#: nn.Linear; squeezenet's head is a convolution, so it names a layer)
MODELS: dict[str, tuple[str, str | None]] = {
    "resnet18": ("tests.zoo:resnet18", None),
    "mobilenet_v3_small": ("tests.zoo:mobilenet_v3_small", None),
    "vit": ("tests.zoo:vit_tiny", None),
    "squeezenet1_1": ("tests.zoo:squeezenet1_1", "features"),
    "logits_object": ("tests.zoo:logits_net", None),
}
FORMATS = ("factory", "pt2", "scripted", "traced")
#: cells that cannot exist, and why (Hugging Face's ``torchscript=True`` mode returns a tuple instead)
NOT_APPLICABLE = {("logits_object", "traced"): "torch.jit.trace records only tensors, tuples, lists and dicts",
                  ("logits_object", "scripted"): "TorchScript cannot compile a dataclass output"}


def save_model(name: str, fmt: str, directory: Path) -> dict[str, Any]:
    """Save model ``name`` in format ``fmt`` under ``directory``; return the config's ``model`` section."""
    factory, layer = MODELS[name]
    module_name, fn = factory.split(":")
    net = getattr(__import__(module_name, fromlist=[fn]), fn)()
    x = torch.zeros(2, 3, SIZE, SIZE)
    section: dict[str, Any] = {"input": {"scale": 255.0, "mean": [0.5] * 3, "std": [0.25] * 3}}
    if layer is not None:
        section["feature_layer"] = layer
    if fmt == "factory":
        torch.save(net.state_dict(), directory / "weights.pt")
        section.update(factory=factory, weights="weights.pt")
    elif fmt == "pt2":
        program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        torch.export.save(program, str(directory / "model.pt2"))
        section["path"] = "model.pt2"
    elif fmt == "scripted":
        torch.jit.script(net).save(str(directory / "model.pt"))
        section["path"] = "model.pt"
    elif fmt == "traced":
        torch.jit.trace(net, x, strict=False, check_trace=False).save(str(directory / "model.pt"))
        section["path"] = "model.pt"
    else:
        raise ValueError(fmt)
    return section


def write_images(directory: Path, *, n: tuple[int, int, int] = (90, 45, 60), n_classes: int = 3,
                 seed: int = 0) -> dict[str, Any]:
    """train/val/test ``.npz`` of SIZE×SIZE RGB images (a class-coloured square on noise) and a
    metadata table; return the config's ``data`` section."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for split, count in zip(("train", "val", "test"), n):
        y = np.arange(count) % n_classes
        x = rng.integers(0, 80, size=(count, SIZE, SIZE, 3), dtype=np.uint8)
        for i, c in enumerate(y):
            x[i, 8:24, 8:24, c] = 220
        ids = np.array([f"{split}-{i}" for i in range(count)])
        np.savez(directory / f"{split}.npz", x=x, y=y, id=ids)
        rows += [{"id": i, "site": rng.choice(["a", "b"])} for i in ids]
    pd.DataFrame(rows).to_csv(directory / "metadata.csv", index=False)
    return {"train": "train.npz", "val": "val.npz", "test": "test.npz", "metadata": "metadata.csv",
            "class_names": [f"c{k}" for k in range(n_classes)]}


#: settings that keep one end-to-end run of the suite to seconds
FAST = {
    "features": {"batch_size": 32, "cache_dir": "cache"},
    "sparse": {"n_lambdas": 12, "lambda_min_ratio": 0.01, "features_per_class": 6},
    "analysis": {"top_k": 2, "explain_features": 1, "lime_examples": 1, "lime_samples": 20,
                 "sanity_features": 1, "sanity_examples": 1},
    "assertions": [{"name": "features-per-class", "type": "max_features_per_class", "max": 30}],
}


class CornerNet(nn.Module):
    """A classifier with a planted shortcut: class scores come from the colour of the centre square,
    and a bright top-left corner pushes class 1 (the wolf/snow case, made exact).

    Its last linear layer sees 8 features: the centre's three channel means, the corner's mean,
    and four harmless statistics (the means of the other corners and of the border)."""

    def __init__(self, shortcut: float = 6.0) -> None:
        super().__init__()
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            for c in range(3):
                self.head.weight[c, c] = 4.0
            self.head.weight[1, 3] = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ch, cw = h // 5, w // 5
        centre = x[:, :, h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean((2, 3))
        corners = [x[:, :, :ch, :cw], x[:, :, :ch, -cw:], x[:, :, -ch:, :cw], x[:, :, -ch:, -cw:]]
        stats = [c.mean((1, 2, 3)) for c in corners] + [x[:, :, :, : w // 8].mean((1, 2, 3))]
        return self.head(torch.cat([centre, torch.stack(stats, 1)], 1))


def corner_net() -> nn.Module:
    return CornerNet().eval()


def write_corner_task(directory: Path, *, n: tuple[int, int, int] = (300, 150, 450), seed: int = 0,
                      with_metadata: bool = True) -> dict[str, Any]:
    """Colour-square images whose top-left corner is bright on 95% of class 1 and 3% of the rest
    in training, on 30% of every class in test (metadata column ``corner``), plus a harmless
    random ``site``; 60% of class 1 has only a faint square, so the corner is what tells them
    apart in training. Return the config's ``data`` section."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for split, count in zip(("train", "val", "test"), n):
        y = np.arange(count) % 3
        x = rng.integers(0, 60, size=(count, SIZE, SIZE, 3), dtype=np.uint8)
        faint = (y == 1) & (rng.random(count) < 0.6)  # most ones have no clear colour: the corner tells them
        for i, c in enumerate(y):
            x[i, 8:24, 8:24, c] = 90 if faint[i] else 220
        rate = np.where(y == 1, 0.95, 0.03) if split != "test" else np.full(count, 0.3)
        corner = rng.random(count) < rate
        x[corner, :6, :6] = 255
        ids = np.array([f"{split}-{i}" for i in range(count)])
        np.savez(directory / f"{split}.npz", x=x, y=y, id=ids)
        rows += [{"id": i, "corner": "yes" if k else "no", "site": rng.choice(["a", "b"])}
                 for i, k in zip(ids, corner)]
    data: dict[str, Any] = {"train": "train.npz", "val": "val.npz", "test": "test.npz",
                            "class_names": ["c0", "c1", "c2"]}
    if with_metadata:
        pd.DataFrame(rows).to_csv(directory / "metadata.csv", index=False)
        data["metadata"] = "metadata.csv"
    return data
