"""ResNet-50 and ResNeXt-50 (32x4d) for 224 px images: our own definitions.

The layout is that of torchvision's ``resnet50`` / ``resnext50_32x4d`` (the "v1.5"
bottleneck with the stride on the 3x3 conv; the same parameter count, 25,557,032 and
25,028,904 with 1000 classes), written here so that torchvision stays optional. Like
:class:`~dlsa.backbones.resnet.ResNet`, the network standardizes its own input with
``input_mean`` / ``input_std`` buffers, takes images in [0, 1], and exposes
``embed(x) -> (N, 2048)``.

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    https://arxiv.org/abs/1512.03385
    Xie et al., "Aggregated Residual Transformations for Deep Neural Networks",
    CVPR 2017. https://arxiv.org/abs/1611.05431
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

LAYOUTS: dict[str, dict[str, Any]] = {
    "resnet50": {"layers": (3, 4, 6, 3), "groups": 1, "width_per_group": 64},
    "resnext50_32x4d": {"layers": (3, 4, 6, 3), "groups": 32, "width_per_group": 4},
}
"""Named layouts of :class:`BottleneckResNet`."""


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped, strided) and 1x1 expand conv-BN layers plus a shortcut.

    Args:
        in_channels: channels of the input.
        planes: base channels of the block; the output has ``4 * planes``.
        stride: stride of the 3x3 conv.
        groups: groups of the 3x3 conv (32 for ResNeXt).
        width_per_group: channels per group (64 for ResNet, 4 for ResNeXt 32x4d).
    """

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int, groups: int, width_per_group: int
    ) -> None:
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C_in, H, W) to (N, 4 * planes, H / stride, W / stride)."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class BottleneckResNet(nn.Module):
    """ImageNet-style ResNet / ResNeXt: 7x7 stem, max pool, four bottleneck stages.

    Args:
        arch: ``"resnet50"`` or ``"resnext50_32x4d"`` (:data:`LAYOUTS`).
        in_channels: image channels (3 for RGB, 1 for grayscale).
        n_classes: outputs of the linear classifier.
        generator: if given, draws the initial weights (otherwise the global RNG does).

    Example:
        >>> net = BottleneckResNet("resnet50", n_classes=5, generator=torch.Generator())
        >>> net.embed(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 2048])
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor
    architecture = "bottleneck-resnet"

    def __init__(
        self,
        arch: str = "resnet50",
        *,
        in_channels: int = 3,
        n_classes: int = 1000,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if arch not in LAYOUTS:
            raise ValueError(f"arch must be one of {sorted(LAYOUTS)}, got {arch!r}")
        if in_channels < 1 or n_classes < 1:
            raise ValueError(f"bad in_channels={in_channels} or n_classes={n_classes}")
        self.arch, self.in_channels, self.n_classes = arch, in_channels, n_classes
        self.feature_dim = 512 * Bottleneck.expansion
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        # Layer constructors draw default weights from the global RNG; with a generator
        # those draws are thrown away, so the global state is restored afterwards.
        with torch.random.fork_rng(devices=[], enabled=generator is not None):
            self._build_layers(**LAYOUTS[arch])
        self.reset_parameters(generator)

    def _build_layers(self, layers: Sequence[int], groups: int, width_per_group: int) -> None:
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks: list[nn.Module] = []
        channels = 64
        for stage, n_blocks in enumerate(layers):
            planes = 64 * 2**stage
            for b in range(n_blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(Bottleneck(channels, planes, stride, groups, width_per_group))
                channels = planes * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(self.feature_dim, self.n_classes)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-normal convs, unit/zero batch norms, uniform(+-1/sqrt(D)) classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out", nonlinearity="relu", generator=generator
                )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        bound = 1.0 / math.sqrt(self.feature_dim)
        nn.init.uniform_(self.fc.weight, -bound, bound, generator=generator)
        nn.init.uniform_(self.fc.bias, -bound, bound, generator=generator)

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-channel input standardization, each of shape (C,)."""
        self.input_mean.copy_(torch.as_tensor(mean, dtype=self.input_mean.dtype))
        self.input_std.copy_(torch.as_tensor(std, dtype=self.input_std.dtype).clamp_min(1e-6))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of images (N, C, H, W) in [0, 1]: the pooled last stage, (N, 2048)."""
        x = (x - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) of images (N, C, H, W) in [0, 1]."""
        return self.fc(self.embed(x))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (without ``generator``), JSON-serializable."""
        return {"arch": self.arch, "in_channels": self.in_channels, "n_classes": self.n_classes}
