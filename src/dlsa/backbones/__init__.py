"""Stage 1: feature learning (small ResNets trained with CE, CBS or PaCo) and extraction.

Optional pretrained torchvision / timm / open_clip models with local weights live in
:mod:`dlsa.backbones.pretrained` (imported on demand, never downloaded); any torch
encoder of your own code through :func:`load_encoder` (:mod:`dlsa.backbones.custom`,
``--backbone MODULE:CALLABLE``).
This subpackage never imports the DLSA cascade.
"""

from dlsa.backbones.checkpoint import load_checkpoint, save_checkpoint
from dlsa.backbones.custom import load_encoder
from dlsa.backbones.extract import extract_features, extract_to_file
from dlsa.backbones.history import EpochRecord, Stage1History
from dlsa.backbones.images import as_image_tensor, channel_stats, random_crop_flip, to_float
from dlsa.backbones.paco import PaCoObjective, paco_loss, train_paco
from dlsa.backbones.resnet import BasicBlock, ResNet
from dlsa.backbones.train import train_backbone
from dlsa.backbones.train_config import LOSSES, ImageTrainConfig, Stage1Config

__all__ = [
    "LOSSES",
    "BasicBlock",
    "EpochRecord",
    "PaCoObjective",
    "ResNet",
    "ImageTrainConfig",
    "Stage1Config",
    "Stage1History",
    "as_image_tensor",
    "channel_stats",
    "extract_features",
    "extract_to_file",
    "load_checkpoint",
    "load_encoder",
    "paco_loss",
    "random_crop_flip",
    "save_checkpoint",
    "to_float",
    "train_backbone",
    "train_paco",
]
