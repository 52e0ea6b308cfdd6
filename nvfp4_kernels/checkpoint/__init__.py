"""NVFP4 checkpoints: ModelOpt and compressed-tensors loaders, an RTN checkpoint quantizer.

    from nvfp4_kernels import checkpoint
    lin = checkpoint.load_linear(tensors, "model.layers.0.mlp.up_proj")   # format detected
    checkpoint.load_model(model, "path/to/nvfp4-checkpoint")              # replaces nn.Linear
    checkpoint.quantize_checkpoint("in_dir", "out_dir", "compressed-tensors")

See docs/checkpoints.md for the formats and scale conventions.
"""

from nvfp4_kernels.checkpoint.conventions import (COMPRESSED_TENSORS, FORMATS, MODELOPT,
                                              CheckpointFormatError)
from nvfp4_kernels.checkpoint.io import CheckpointReader
from nvfp4_kernels.checkpoint.loader import LoadResult, load_linear, load_model
from nvfp4_kernels.checkpoint.rtn import (QuantizeReport, quantize_checkpoint,
                                               quantize_model)
from nvfp4_kernels.checkpoint.select import DEFAULT_EXCLUDE

__all__ = ["COMPRESSED_TENSORS", "DEFAULT_EXCLUDE", "FORMATS", "MODELOPT", "CheckpointFormatError",
           "CheckpointReader", "LoadResult", "QuantizeReport", "load_linear", "load_model",
           "quantize_checkpoint", "quantize_model"]
