"""STARCaster Model Loader: a checkpoint from models/starcaster/ or the embedded default."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import folder_paths
import torch
from comfy_api.latest import io

from ..starcaster_core.checkpoint import CheckpointError, load_checkpoint
from ..starcaster_core.default import DEFAULT_NAME, default_model
from ..starcaster_core.model import STARCaster
from .types import CATEGORY, StarcasterModel
from .validate import not_in, user_errors

FOLDER = "starcaster"
MISSING_FIX = ("put the .safetensors file in models/starcaster/ and press R to refresh the list, "
               "or pick the embedded demo model")
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
            description="Loads a STARCaster model from models/starcaster/, "
                        "or the small demo model embedded in the pack.",
            inputs=[
                io.Combo.Input("model_name", options=[DEFAULT_NAME, *folder_paths.get_filename_list(FOLDER)],
                               default=DEFAULT_NAME, tooltip="Files in models/starcaster/ (*.safetensors)"),
                io.Combo.Input("precision", options=["auto", *DTYPES], default="auto",
                               tooltip="Weight dtype; auto picks what the device runs best"),
                io.Boolean.Input("compile", default=False, optional=True,
                                 tooltip="torch.compile the transformer blocks: the first video compiles "
                                         "(slow), later ones run faster. Needs a C++ compiler on CPU."),
            ],
            outputs=[StarcasterModel.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str | None = None, precision: str | None = None) -> bool | str:
        """Refuse names that are not in models/starcaster/ before anything runs (no path tricks)."""
        return (not_in(model_name, [DEFAULT_NAME, *folder_paths.get_filename_list(FOLDER)], "model", MISSING_FIX)
                or not_in(precision, ["auto", *DTYPES], "precision", "pick auto, fp32, bf16 or fp16")
                or True)

    @classmethod
    def execute(cls, model_name: str, precision: str, compile: bool = False) -> io.NodeOutput:
        load_device = comfy.model_management.get_torch_device()
        offload_device = comfy.model_management.unet_offload_device()
        with user_errors("STARCaster Model Loader"):
            problem = cls.validate_inputs(model_name, precision)
            if problem is not True:
                raise CheckpointError(problem)
        dtype = pick_dtype(precision, load_device)
        ops = comfy.ops.disable_weight_init  # offloadable layers, like ComfyUI's own models
        with user_errors("STARCaster Model Loader"):
            if model_name == DEFAULT_NAME:
                module = default_model(ops, dtype)
            else:
                path = folder_paths.get_full_path(FOLDER, model_name)
                if path is None:  # deleted since the prompt was validated
                    raise CheckpointError(f"checkpoint {model_name!r} not found in models/{FOLDER}/; {MISSING_FIX}")
                module = load_checkpoint(path, ops, dtype)
        if compile:
            module.denoiser.compile_blocks()
        patcher = comfy.model_patcher.ModelPatcher(module, load_device=load_device, offload_device=offload_device)
        return io.NodeOutput(LoadedModel(patcher, model_name))
