"""STARCaster Model Loader: a checkpoint from models/starcaster/ or the embedded default."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import folder_paths
import torch
from comfy_api.latest import io

from ..starcaster_core.checkpoint import load_checkpoint
from ..starcaster_core.default import DEFAULT_NAME, default_model
from ..starcaster_core.model import STARCaster

from .types import CATEGORY, StarcasterModel

FOLDER = "starcaster"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    """What travels on a STARCASTER_MODEL socket."""

    patcher: comfy.model_patcher.ModelPatcher
    name: str

    @property
    def module(self) -> STARCaster:
        return self.patcher.model

    def load(self) -> torch.device:
        """Put the weights where ComfyUI wants them for sampling; returns that device."""
        comfy.model_management.load_models_gpu([self.patcher])
        return self.patcher.load_device


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision != "auto":
        return DTYPES[precision]
    return comfy.model_management.unet_dtype(device, supported_dtypes=[torch.bfloat16, torch.float16, torch.float32])


class ModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterModelLoader",
            display_name="STARCaster Model Loader",
            category=CATEGORY,
            description="Loads a STARCaster model from models/starcaster/, or the small demo model embedded in the pack.",
            inputs=[
                io.Combo.Input("model_name", options=[DEFAULT_NAME, *folder_paths.get_filename_list(FOLDER)],
                               default=DEFAULT_NAME, tooltip="Files in models/starcaster/ (*.safetensors)"),
                io.Combo.Input("precision", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight dtype; auto picks what the device runs best"),
            ],
            outputs=[StarcasterModel.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model_name: str, precision: str) -> io.NodeOutput:
        load_device = comfy.model_management.get_torch_device()
        offload_device = comfy.model_management.unet_offload_device()
        dtype = pick_dtype(precision, load_device)
        ops = comfy.ops.disable_weight_init  # offloadable layers, like ComfyUI's own models
        if model_name == DEFAULT_NAME:
            module = default_model(ops, dtype)
        else:
            module = load_checkpoint(folder_paths.get_full_path_or_raise(FOLDER, model_name), ops, dtype)
        patcher = comfy.model_patcher.ModelPatcher(module, load_device=load_device, offload_device=offload_device)
        return io.NodeOutput(LoadedModel(patcher, model_name))
