"""Image data sets of the long-tailed benchmarks, read from local files only.

- Fashion-MNIST (idx files) and CIFAR-10/100 (the "python" pickle batches), made
  long-tailed with the exponential profile of :func:`dlsa.engine.splits.long_tailed_counts`;
  images come back as uint8 arrays, labels as int64 (:class:`ImageSplits`).
- ImageNet-LT / Places-LT / iNaturalist 2018 through their split lists
  (``relative/path label`` per line) or plain class folders, read lazily by
  :class:`ImageListDataset`.

Nothing is downloaded; a missing file raises an error that says how to get it. The
validation split of a long-tailed set is carved from its long-tailed train subset (see
:func:`split_long_tailed`), so choosing an epoch never touches the test set.
"""

from dlsa.datasets.base import DataFileError, ImageSplits, make_long_tailed, split_long_tailed
from dlsa.datasets.cifar import cifar_lt, load_cifar, load_cifar_batch
from dlsa.datasets.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    FASHION_MNIST_ROOT,
    fashion_mnist_lt,
    load_fashion_mnist,
    read_idx,
)
from dlsa.datasets.image_list import (
    IMAGE_EXTENSIONS,
    ImageListDataset,
    load_image,
    read_class_folders,
    read_split_entries,
    read_split_list,
    resize_center_crop,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_ROOT",
    "IMAGE_EXTENSIONS",
    "DataFileError",
    "ImageListDataset",
    "ImageSplits",
    "cifar_lt",
    "fashion_mnist_lt",
    "load_cifar",
    "load_cifar_batch",
    "load_fashion_mnist",
    "load_image",
    "make_long_tailed",
    "read_class_folders",
    "read_idx",
    "read_split_entries",
    "read_split_list",
    "resize_center_crop",
    "split_long_tailed",
]
