"""Models: each builds for its input shapes, runs forward/backward, and rejects misuse."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from harness.config import ConfigError
from harness.models import MODELS, build_model


def test_registry_names():
    assert set(MODELS) == {"linear", "mlp", "cnn", "resnet18", "preact_resnet18", "wrn"}


@pytest.mark.parametrize(
    "name, shape, kwargs",
    [
        ("linear", (1, 8, 8), {}),
        ("linear", (1, 40), {}),
        ("mlp", (1, 8, 8), {}),
        ("mlp", (1, 40), dict(width=16, depth=3)),
        ("cnn", (1, 40), dict(width=8)),
        ("cnn", (1, 8, 8), dict(width=8)),
        ("cnn", (3, 32, 32), dict(width=4)),
        ("resnet18", (3, 32, 32), dict(width=4)),
        ("resnet18", (1, 28, 28), dict(width=4)),
        ("preact_resnet18", (3, 32, 32), dict(width=4)),
        ("wrn", (3, 32, 32), dict(depth=10, width=1)),
    ],
)
def test_forward_and_backward(name, shape, kwargs):
    torch.manual_seed(0)
    model = build_model(name, shape, 7, **kwargs)
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([0, 3, 6])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_mlp_width_and_depth():
    model = build_model("mlp", (1, 8, 8), 10, width=32, depth=3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 32), (32, 10)]
    default = [m for m in build_model("mlp", (1, 40), 10).modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in default] == [128, 128, 10]


def test_cnn_uses_batchnorm_and_the_right_convolutions():
    one_d = build_model("cnn", (1, 40), 10)
    two_d = build_model("cnn", (3, 32, 32), 10)
    assert sum(isinstance(m, nn.Conv1d) for m in one_d.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in one_d.modules()) == 3
    assert sum(isinstance(m, nn.Conv2d) for m in two_d.modules()) == 3
    assert [m.out_channels for m in two_d.modules() if isinstance(m, nn.Conv2d)] == [32, 64, 64]


def test_parameter_counts_match_the_published_architectures():
    """For 10 classes: ResNet-18 (CIFAR) 11,173,962 parameters; PreActResNet-18 11,171,146
    in the widely used CIFAR implementation, plus 1,024 for He et al.'s final BatchNorm;
    WRN-16-4 2,748,890 (WRN-28-10: 36,479,194, too slow to build here)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    resnet = build_model("resnet18", (3, 32, 32), 10)
    assert count(resnet) == 11_173_962
    assert count(build_model("preact_resnet18", (3, 32, 32), 10)) == 11_171_146 + 1024
    assert count(build_model("wrn", (3, 32, 32), 10, depth=16, width=4)) == 2_748_890
    stem = resnet.features[0]
    assert (stem.kernel_size, stem.stride) == ((3, 3), (1, 1))
    assert not any(isinstance(m, nn.MaxPool2d) for m in resnet.modules())


def test_wrn_blocks_follow_depth_and_width():
    model = build_model("wrn", (3, 32, 32), 10, depth=16, width=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 2 * 3 * 2  # stem + 2 convs x 3 groups x (16 - 4) / 6 blocks
    assert convs[-1].out_channels == 64 * 2
    assert model.head.in_features == 128


def test_misuse_is_a_config_error():
    with pytest.raises(ConfigError, match=r"resnet18.*\(1, 40\)") as info:
        build_model("resnet18", (1, 40), 10)
    assert info.value.field == "model"
    with pytest.raises(ConfigError, match=r"\(depth - 4\) % 6 == 0") as info:
        build_model("wrn", (3, 32, 32), 10, depth=12)
    assert info.value.field == "depth"
    with pytest.raises(ConfigError, match="null for model cnn"):
        build_model("cnn", (1, 40), 10, depth=5)
    with pytest.raises(ConfigError, match="null for model linear"):
        build_model("linear", (1, 40), 10, width=5)
    with pytest.raises(ConfigError, match="mlp, cnn"):
        build_model("vgg", (3, 32, 32), 10)


def test_importing_data_and_models_stays_cheap():
    """Config validation imports both; the heavy libraries load only inside loaders."""
    heavy = ("torchvision", "sklearn", "mnist1d", "scipy")
    code = f"import sys, harness.data, harness.models; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
