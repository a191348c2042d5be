import logging

import numpy as np
import pytest
import torch

from sparsecheck.data import ImageDataset, InputSpec
from sparsecheck.models import load_model
from sparsecheck.errors import ModelError
from sparsecheck.features.extraction import FeatureExtractor, extract_features
from tests.helpers import make_tiny_net


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return ImageDataset.from_arrays(rng.integers(0, 256, (37, 8, 8), dtype=np.uint8),
                                    rng.integers(0, 3, 37), name="toy")


def _reference(net, data):
    with torch.no_grad():
        x = InputSpec().transform(data.images)
        h = torch.relu(net.fc(torch.flatten(net.pool(torch.relu(net.conv(x))), 1)))
        return h.numpy(), net(x).numpy()


def test_default_layer_is_input_of_last_linear(data):
    net = make_tiny_net()
    fs = extract_features(net, data, InputSpec(), batch_size=10, device="cpu")
    feats, logits = _reference(net, data)
    assert fs.layer == "head:input"
    np.testing.assert_allclose(fs.features, feats, atol=1e-5)
    np.testing.assert_allclose(fs.logits, logits, atol=1e-5)


def test_named_layer_output(data):
    net = make_tiny_net()
    fs = extract_features(net, data, InputSpec(), layer="pool", batch_size=16, device="cpu")
    assert fs.features.shape == (37, 16) and fs.layer == "pool"


def test_exported_and_torchscript_models_give_the_same_features(tmp_path, data):
    net = make_tiny_net()
    x = torch.zeros(2, 1, 8, 8)
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    torch.jit.script(net).save(str(tmp_path / "m.pt"))
    expected, _ = _reference(net, data)
    exported = load_model(path=tmp_path / "m.pt2")
    for model in (exported, load_model(path=tmp_path / "m.pt")):
        fs = extract_features(model, data, InputSpec(), batch_size=16, device="cpu")
        np.testing.assert_allclose(fs.features, expected, atol=1e-5)
    assert extract_features(exported, data, InputSpec(), layer="pool", device="cpu").features.shape == (37, 16)


def test_unknown_layer_is_named(tmp_path, data):
    with pytest.raises(ModelError, match="feature_layer 'nope' does not exist; layers: conv, pool, fc, head"):
        with FeatureExtractor(make_tiny_net(), "nope"):
            pass
    net = make_tiny_net()
    ep = torch.export.export(net, (torch.zeros(2, 1, 8, 8),))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    with pytest.raises(ModelError, match="feature_layer 'nope' does not exist"):
        with FeatureExtractor(load_model(path=tmp_path / "m.pt2"), "nope"):
            pass


def test_hooks_are_removed_even_when_forward_raises():
    net = make_tiny_net()
    with pytest.raises(RuntimeError):
        with FeatureExtractor(net) as ex:
            assert len(net.head._forward_hooks) == 1
            ex(torch.zeros(2, 5, 8, 8))  # wrong channel count: conv raises
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_cache_second_run_skips_the_model(tmp_path, data, caplog):
    net = make_tiny_net()
    calls = []
    net.conv.register_forward_pre_hook(lambda *a: calls.append(1))
    first = extract_features(net, data, InputSpec(), batch_size=8, device="cpu", cache_dir=tmp_path)
    assert not first.from_cache and len(calls) == 5
    assert isinstance(first.features, np.memmap)  # streamed into a memory map
    with caplog.at_level(logging.INFO, logger="sparsecheck"):
        second = extract_features(net, data, InputSpec(), batch_size=8, device="cpu", cache_dir=tmp_path)
    assert second.from_cache and len(calls) == 5
    assert "read from cache" in caplog.text
    np.testing.assert_array_equal(np.asarray(first.features), np.asarray(second.features))
    # a change of weights, data or layer is a different key
    with torch.no_grad():
        net.head.bias.add_(1.0)
    assert not extract_features(net, data, InputSpec(), batch_size=8, device="cpu", cache_dir=tmp_path).from_cache
    assert not extract_features(net, data, InputSpec(), layer="pool", device="cpu", cache_dir=tmp_path).from_cache


def test_interrupted_extraction_leaves_no_cache_entry(tmp_path, data):
    net = make_tiny_net()
    seen = []

    def boom(*_):
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt

    handle = net.conv.register_forward_pre_hook(boom)
    with pytest.raises(KeyboardInterrupt):
        extract_features(net, data, InputSpec(), batch_size=8, device="cpu", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    handle.remove()
    assert not extract_features(net, data, InputSpec(), batch_size=8, device="cpu", cache_dir=tmp_path).from_cache


def test_dataloader_workers_give_identical_features(data):
    net = make_tiny_net()
    a = extract_features(net, data, InputSpec(), batch_size=8, device="cpu")
    b = extract_features(net, data, InputSpec(), batch_size=8, device="cpu", num_workers=2)
    np.testing.assert_allclose(a.features, b.features, atol=1e-6)
