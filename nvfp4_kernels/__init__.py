"""nvfp4_kernels: NVFP4 (E2M1 + e4m3 block scales + fp32 global scale) kernels for PyTorch.

Importing this package registers the ``torch.ops.nvfp4.*`` custom ops and queries no GPU.
"""

from nvfp4_kernels import attention, kv_cache, reference
from nvfp4_kernels.api import (dequantize, gemm, global_scale, quantize, swizzle_scales,
                               unswizzle_scales)
from nvfp4_kernels.backends.registry import BackendUnavailableError
from nvfp4_kernels.formats import NVFP4
from nvfp4_kernels.info import info
from nvfp4_kernels.nn import NVFP4Linear
from nvfp4_kernels import checkpoint  # safetensors only (~40 ms), never transformers
from nvfp4_kernels.checkpoint import quantize_model

__version__ = "0.1.0"

__all__ = ["NVFP4", "NVFP4Linear", "BackendUnavailableError", "attention", "checkpoint", "dequantize", "gemm",
           "global_scale", "info", "kv_cache", "quantize", "quantize_model", "reference",
           "swizzle_scales", "unswizzle_scales"]
