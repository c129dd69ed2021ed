"""Small ResNets for 28x28 / 32x32 images (the CIFAR family of He et al., depth 6n + 2).

The network standardizes its own input with per-channel ``input_mean`` / ``input_std``
buffers (set from the training images), so it takes images scaled to [0, 1] and the
statistics travel with its checkpoint.

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2.
    https://arxiv.org/abs/1512.03385
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first conv (2 halves H and W).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C_in, H, W) to (N, C_out, H / stride, W / stride)."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: a 3x3 stem, three stages of BasicBlocks, global average pool.

    Stage ``s`` has ``(depth - 2) / 6`` blocks of width ``widths[s]``; stages after the
    first halve the resolution. The feature dimension D is ``widths[-1]``.

    Args:
        in_channels: image channels (1 for grayscale, 3 for RGB).
        n_classes: outputs of the linear classifier.
        depth: 6n + 2 layers: 8 (one block per stage), 14, 20, 32, ...
        widths: channels of the three stages.
        generator: if given, draws the initial weights (otherwise the global RNG does).

    Example:
        >>> net = ResNet(in_channels=1, n_classes=10, generator=torch.Generator().manual_seed(0))
        >>> net.embed(torch.rand(2, 1, 28, 28)).shape, net(torch.rand(2, 1, 28, 28)).shape
        (torch.Size([2, 64]), torch.Size([2, 10]))
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self,
        *,
        in_channels: int = 3,
        n_classes: int = 10,
        depth: int = 8,
        widths: Sequence[int] = (16, 32, 64),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {tuple(widths)}")
        if in_channels < 1 or n_classes < 1:
            raise ValueError(f"bad in_channels={in_channels} or n_classes={n_classes}")
        self.in_channels, self.n_classes, self.depth = in_channels, n_classes, depth
        self.widths = tuple(int(w) for w in widths)
        self.feature_dim = self.widths[-1]
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        # Layer constructors draw default weights from the global RNG; with a generator
        # those draws are thrown away, so the global state is restored afterwards.
        with torch.random.fork_rng(devices=[], enabled=generator is not None):
            self._build_layers()
        self.reset_parameters(generator)

    def _build_layers(self) -> None:
        widths, n_blocks = self.widths, (self.depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        width = widths[0]
        for stage, out in enumerate(widths):
            for b in range(n_blocks):
                blocks.append(BasicBlock(width, out, 2 if stage > 0 and b == 0 else 1))
                width = out
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
        nn.init.zeros_(self.fc.bias)

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-channel input standardization, each of shape (C,)."""
        self.input_mean.copy_(torch.as_tensor(mean, dtype=self.input_mean.dtype))
        self.input_std.copy_(torch.as_tensor(std, dtype=self.input_std.dtype).clamp_min(1e-6))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of images (N, C, H, W) in [0, 1]: the pooled last stage, (N, D)."""
        x = (x - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) of images (N, C, H, W) in [0, 1]."""
        return self.fc(self.embed(x))

    def config(self) -> dict[str, Any]:
        """The constructor arguments (without ``generator``), JSON-serializable."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "depth": self.depth,
            "widths": list(self.widths),
        }
