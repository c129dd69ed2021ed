"""Stage 1: feature learning (small ResNets trained with CE or CBS) and feature extraction.

Optional pretrained torchvision / timm / open_clip models with local weights live in
:mod:`dlsa.backbones.pretrained` (imported on demand, never downloaded).
This subpackage never imports the DLSA cascade.
"""

from dlsa.backbones.checkpoint import load_checkpoint, save_checkpoint
from dlsa.backbones.extract import extract_features, extract_to_file
from dlsa.backbones.images import as_image_tensor, channel_stats, random_crop_flip, to_float
from dlsa.backbones.resnet import BasicBlock, ResNet
from dlsa.backbones.train import SAMPLERS, EpochRecord, TrainHistory, train_backbone

__all__ = [
    "SAMPLERS",
    "BasicBlock",
    "EpochRecord",
    "ResNet",
    "TrainHistory",
    "as_image_tensor",
    "channel_stats",
    "extract_features",
    "extract_to_file",
    "load_checkpoint",
    "random_crop_flip",
    "save_checkpoint",
    "to_float",
    "train_backbone",
]
