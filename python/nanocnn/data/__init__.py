"""Data pipeline: Keras-style ImageDataGenerator with flow() and flow_from_directory().

See nanocnn.data.image for the generator and nanocnn.data.iterators for how iterators run
(forever, ``len()`` batches per epoch, prefetched in a background thread).
"""
from .image import (DirectoryIterator, ImageDataGenerator, NumpyArrayIterator, img_to_array,
                    load_img)
from .iterators import BatchIterator

__all__ = ["ImageDataGenerator", "NumpyArrayIterator", "DirectoryIterator", "BatchIterator",
           "load_img", "img_to_array"]
