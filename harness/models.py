"""The model registry: name -> builder(input_shape, num_classes, width, depth).

Every model takes its input shape and class count from the dataset. ``width`` and
``depth`` mean what each model's docstring says; a model that has no such knob rejects
it (a ConfigError), so a typo in a sweep never silently trains the default. A model
from outside the package is named by import path (``model: mypkg.models:build``); see
docs/extending.md. ``check_fits`` runs a model on the meta device against a dataset's
input shape, so a mismatch fails before any work.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from harness.errors import ConfigError
from harness.plugins import resolve

Shape = tuple[int, ...]  # one example's shape: (C, H, W) images or (C, L) signals


# -- small models -------------------------------------------------------------------------
def build_linear(input_shape: Shape, num_classes: int, width: int | None, depth: int | None) -> nn.Module:
    """Flatten + one affine layer (logistic regression on the inputs)."""
    _no_knob("linear", width=width, depth=depth)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def build_mlp(input_shape: Shape, num_classes: int, width: int | None, depth: int | None) -> nn.Module:
    """``depth`` hidden layers (default 2) of ``width`` units (default 128), ReLU."""
    width, depth = width or 128, depth or 2
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU(inplace=True)]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def build_cnn(input_shape: Shape, num_classes: int, width: int | None, depth: int | None) -> nn.Module:
    """Three conv-BatchNorm-ReLU blocks (``width``, 2 ``width``, 2 ``width`` channels;
    default width 32; the last two with stride 2), global average pooling, a linear head.
    Conv1d for (C, L) signals such as MNIST-1D, Conv2d for (C, H, W) images. BatchNorm is
    there on purpose: it makes the SAM BatchNorm policy matter."""
    _no_knob("cnn", depth=depth)
    if len(input_shape) not in (2, 3):
        raise ConfigError("model", "cnn", f"a model for input shape {input_shape} (cnn takes (C, L) or (C, H, W))")
    conv, norm, pool = (
        (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d) if len(input_shape) == 2
        else (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)
    )
    w = width or 32
    channels = (input_shape[0], w, 2 * w, 2 * w)
    layers: list[nn.Module] = []
    for i, stride in enumerate((1, 2, 2)):
        layers += [
            conv(channels[i], channels[i + 1], 3, stride=stride, padding=1, bias=False),
            norm(channels[i + 1]),
            nn.ReLU(inplace=True),
        ]
    layers += [pool(1), nn.Flatten(), nn.Linear(channels[-1], num_classes)]
    return nn.Sequential(*layers)


# -- ResNets for 32x32 images -------------------------------------------------------------
def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv3x3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """He et al. 2016 (identity mappings): BN-ReLU-conv twice; the projection shortcut,
    when needed, takes the pre-activated input; optional dropout between the convs (WRN)."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv3x3(c_in, c_out, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), _conv3x3(c_out, c_out)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + skip


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stride-1 stem, no max-pool, four stages of blocks (strides
    1, 2, 2, 2), global average pooling, a linear head. ``preact`` switches to pre-activation
    blocks, a bare stem and a final BN-ReLU (He et al. 2016)."""

    def __init__(self, in_channels: int, num_classes: int, width: int, blocks: tuple[int, ...], preact: bool):
        super().__init__()
        block = PreActBlock if preact else BasicBlock
        stem: list[nn.Module] = [_conv3x3(in_channels, width)]
        if not preact:
            stem += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers, c_in = [], width
        for stage, count in enumerate(blocks):
            c_out = width * 2**stage
            for i in range(count):
                layers.append(block(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        tail = [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)] if preact else []
        self.features = nn.Sequential(*stem, *layers, *tail, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class WideResNet(nn.Module):
    """Zagoruyko & Komodakis 2016, WRN-depth-k: a 16-channel stem, three groups of
    (depth - 4) / 6 pre-activation blocks with 16k, 32k, 64k channels (strides 1, 2, 2), a
    final BN-ReLU, global average pooling, a linear head."""

    def __init__(self, in_channels: int, num_classes: int, depth: int, widen: int, dropout: float = 0.0):
        super().__init__()
        per_group = (depth - 4) // 6
        layers: list[nn.Module] = [_conv3x3(in_channels, 16)]
        c_in = 16
        for group, stride in enumerate((1, 2, 2)):
            c_out = 16 * widen * 2**group
            for i in range(per_group):
                layers.append(PreActBlock(c_in, c_out, stride if i == 0 else 1, dropout))
                c_in = c_out
        layers += [nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _init_weights(model: nn.Module) -> None:
    """He init for convolutions (fan-out), unit BatchNorm, zero biases: the usual choice
    for these architectures."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def build_resnet18(input_shape: Shape, num_classes: int, width: int | None, depth: int | None) -> nn.Module:
    """ResNet-18, CIFAR variant (BasicBlocks [2, 2, 2, 2]); ``width`` = stem channels (64)."""
    _no_knob("resnet18", depth=depth)
    _image_shape("resnet18", input_shape)
    return ResNet(input_shape[0], num_classes, width or 64, (2, 2, 2, 2), preact=False)


def build_preact_resnet18(input_shape: Shape, num_classes: int, width: int | None, depth: int | None) -> nn.Module:
    """PreActResNet-18 (He et al. 2016, identity mappings); ``width`` = stem channels (64)."""
    _no_knob("preact_resnet18", depth=depth)
    _image_shape("preact_resnet18", input_shape)
    return ResNet(input_shape[0], num_classes, width or 64, (2, 2, 2, 2), preact=True)


def build_wrn(input_shape: Shape, num_classes: int, width: int | None, depth: int | None) -> nn.Module:
    """WideResNet: ``depth`` (default 28, (depth - 4) % 6 == 0) and widen factor ``width``
    (default 10): WRN-28-10, the paper's model."""
    _image_shape("wrn", input_shape)
    depth, widen = depth or 28, width or 10
    if depth < 10 or (depth - 4) % 6:
        raise ConfigError("depth", depth, "an integer >= 10 with (depth - 4) % 6 == 0 for wrn, e.g. 16, 22, 28")
    return WideResNet(input_shape[0], num_classes, depth, widen)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": build_linear,
    "mlp": build_mlp,
    "cnn": build_cnn,
    "resnet18": build_resnet18,
    "preact_resnet18": build_preact_resnet18,
    "wrn": build_wrn,
}


def resolve_model(name: str) -> Callable[..., nn.Module]:
    """The builder of a registered model, or of a plug-in named by import path
    (``model: mypkg.models:build``) with the same signature as the builders above."""
    return resolve("model", name, MODELS, "builder", "(input_shape, num_classes, width, depth)")


def build_model(
    name: str, input_shape: Shape, num_classes: int, *, width: int | None = None, depth: int | None = None
) -> nn.Module:
    """The model ``name`` for inputs of ``input_shape`` (no batch dimension)."""
    model = resolve_model(name)(tuple(input_shape), num_classes, width, depth)
    if not isinstance(model, nn.Module):
        raise ConfigError("model", name, f"a builder that returns a torch.nn.Module (it returned {type(model).__name__})")
    return model


def check_fits(name: str, input_shape: Shape, num_classes: int, *, width: int | None = None,
               depth: int | None = None) -> None:
    """Build the model on the meta device (no memory, no compute) and run one forward pass
    on a meta batch of ``input_shape``: a model that cannot take the dataset's inputs, or
    gives other than ``num_classes`` logits, fails here in one line, before any trial runs."""
    with torch.device("meta"):
        model = build_model(name, input_shape, num_classes, width=width, depth=depth)
        try:
            logits = model.eval()(torch.empty(2, *input_shape))
        except (RuntimeError, ValueError, TypeError) as error:
            reason = " ".join(str(error).split())[:200]
            raise ConfigError("model", name, f"a model for inputs of shape {tuple(input_shape)} "
                              f"(its forward pass fails: {reason})") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError("model", name, f"a model with {num_classes} outputs per example "
                          f"(it gives {shape} for a batch of 2)")


def _no_knob(model: str, **knobs: int | None) -> None:
    for knob, value in knobs.items():
        if value is not None:
            raise ConfigError(knob, value, f"null for model {model} (it has no {knob} setting)")


def _image_shape(model: str, input_shape: Shape) -> None:
    if len(input_shape) != 3:
        allowed = f"a model for input shape {input_shape}: {model} needs (C, H, W) images (try mlp or cnn)"
        raise ConfigError("model", model, allowed)
