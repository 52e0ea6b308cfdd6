"""``quantization_config`` (config.json) and ``hf_quant_config.json`` as each format writes them.

ModelOpt: ``hf_quant_config.json`` holds ``{"producer", "quantization": {"quant_algo",
"group_size", "exclude_modules", "kv_cache_quant_algo"}}`` (vLLM requires those four keys for
NVFP4), and config.json carries the same facts in ModelOpt's compressed-tensors-like layout with
``"quant_method": "modelopt"``. quant_algo is ``NVFP4`` (W4A4) or ``W4A16_NVFP4`` (weight-only).

compressed-tensors: config.json ``quantization_config`` with ``format: nvfp4-pack-quantized``
and one config group targeting ``Linear`` (weights 4-bit float, ``tensor_group``, group 16;
``input_activations`` the same for W4A4, absent for ``NVFP4A16``). Activation global scales that
are static (written) are ``dynamic: "local"``, as the compressed-tensors NVFP4 preset; without
calibration we write ``dynamic: true`` and no ``input_global_scale`` tensors, which is what
compressed-tensors itself does for dynamic activations.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvfp4_kernels.checkpoint.conventions import COMPRESSED_TENSORS, MODELOPT

GROUP = 16
PRODUCER_NOTE = "nvfp4_kernels RTN"


def _nvfp4_args(dynamic) -> dict:
    return {"num_bits": 4, "type": "float", "symmetric": True, "group_size": GROUP,
            "strategy": "tensor_group", "dynamic": dynamic, "observer": "minmax"}


def build(format: str, *, activations: str, static_inputs: bool, ignore: list[str],
          version: str) -> tuple[dict, dict | None]:
    """(config.json quantization_config, hf_quant_config.json content or None)."""
    w4a4 = activations == "nvfp4"
    if format == MODELOPT:
        algo = "NVFP4" if w4a4 else "W4A16_NVFP4"
        # ModelOpt readers key on the producer name; the version says who really wrote it.
        producer = {"name": "modelopt", "version": f"{PRODUCER_NOTE} {version}"}
        hf_quant = {"producer": producer,
                    "quantization": {"quant_algo": algo, "kv_cache_quant_algo": None,
                                     "group_size": GROUP, "exclude_modules": list(ignore)}}
        group = {"weights": {"dynamic": False, "num_bits": 4, "type": "float",
                             "group_size": GROUP}, "targets": ["Linear"]}
        if w4a4:
            group["input_activations"] = {"dynamic": not static_inputs, "num_bits": 4,
                                          "type": "float", "group_size": GROUP}
        cfg = {"config_groups": {"group_0": group}, "ignore": list(ignore), "quant_algo": algo,
               "producer": producer, "quant_method": "modelopt"}
        return cfg, hf_quant
    if format == COMPRESSED_TENSORS:
        group = {"targets": ["Linear"], "weights": _nvfp4_args(False)}
        if w4a4:
            group["input_activations"] = _nvfp4_args("local" if static_inputs else True)
        cfg = {"config_groups": {"group_0": group}, "format": "nvfp4-pack-quantized",
               "ignore": list(ignore), "quant_method": "compressed-tensors",
               "quantization_status": "compressed", "kv_cache_scheme": None,
               "global_compression_ratio": None}
        return cfg, None
    raise ValueError(f"format: must be 'modelopt' or 'compressed-tensors', got {format!r}")


def read(checkpoint_dir) -> dict | None:
    """The checkpoint's quantization config (config.json first, then hf_quant_config.json)."""
    d = Path(checkpoint_dir)
    if d.is_file():
        d = d.parent
    cfg_path = d / "config.json"
    if cfg_path.is_file():
        qc = json.loads(cfg_path.read_text()).get("quantization_config")
        if qc:
            return qc
    hq = d / "hf_quant_config.json"
    if hq.is_file():
        data = json.loads(hq.read_text())
        return {"quant_method": "modelopt", **data}
    return None


def activations_quantized(qc: dict | None) -> bool | None:
    """True: W4A4 (NVFP4 activations), False: weight-only, None: config does not say."""
    if not qc:
        return None
    method = str(qc.get("quant_method", "")).lower()
    if method.startswith("modelopt"):
        algo = qc.get("quant_algo") or qc.get("quantization", {}).get("quant_algo")
        if algo is None:
            return None
        return str(algo).upper() == "NVFP4"
    if method == "compressed-tensors":
        groups = qc.get("config_groups") or {}
        return any(g.get("input_activations") for g in groups.values())
    return None
