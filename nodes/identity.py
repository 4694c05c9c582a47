"""Identity nodes: from a portrait, from a file, mix, random, save."""

from __future__ import annotations

import os

import folder_paths
import torch
from comfy_api.latest import io

from ..starcaster_core.identity import (
    IdentityError,
    encode_portrait,
    load_identity,
    mix,
    random_identity,
    save_identity,
)
from .types import CATEGORY, Identity, StarcasterModel
from .validate import not_in, safe_prefix, user_errors

FOLDER = "starcaster_identities"
SUBFOLDER = "starcaster_identities"
MISSING_FIX = (f"save one with 'STARCaster Save Identity' (it lands in output/{SUBFOLDER}/) or put it in "
               f"models/{FOLDER}/, then press R to refresh the list")


def single_rgb(image: torch.Tensor) -> torch.Tensor:
    """One (H, W, 3) image from a ComfyUI IMAGE batch, with a clear error otherwise."""
    if image.ndim != 4:
        raise IdentityError(f"expected an IMAGE batch [N, H, W, C], got shape {tuple(image.shape)}; "
                            "connect an image from LoadImage")
    if image.shape[0] != 1:
        raise IdentityError(
            f"got {image.shape[0]} portraits; STARCaster Identity takes one. Pick one with "
            "'ImageFromBatch', or make identities separately and blend them with 'STARCaster Mix Identity'"
        )
    img = image[0]
    if img.shape[-1] == 1:
        img = img.expand(*img.shape[:2], 3)  # grayscale -> RGB
    elif img.shape[-1] == 4:
        img = img[..., :3]  # RGBA -> RGB (alpha ignored)
    elif img.shape[-1] != 3:
        raise IdentityError(f"the image has {img.shape[-1]} channels; use an RGB, RGBA or grayscale image")
    return img


class IdentityFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterIdentityFromImage",
            display_name="STARCaster Identity (portrait)",
            category=CATEGORY,
            description="Encodes the face in a portrait into an identity embedding (a soft identity constraint). "
                        "Models that also read the portrait (config reference_frame) get the cropped "
                        "portrait with it; Save Identity keeps it. Give a frontal portrait: models that "
                        "turn it to the camera (config reference_warp) take it as seen from the front.",
            inputs=[
                StarcasterModel.Input("model"),
                io.Image.Input("image"),
                io.Combo.Input("crop", options=["face", "center", "full"], default="face",
                               tooltip="face: detect the face (OpenCV); center: central square; full: whole image"),
            ],
            outputs=[Identity.Output(display_name="identity")],
        )

    @classmethod
    def execute(cls, model, image: torch.Tensor, crop: str) -> io.NodeOutput:
        with user_errors("STARCaster Identity (portrait)"):
            portrait = single_rgb(image)
            model.load()
            return io.NodeOutput(encode_portrait(model.module, portrait, crop))


class LoadIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterLoadIdentity",
            display_name="STARCaster Load Identity",
            category=CATEGORY,
            inputs=[io.Combo.Input("identity_file", options=folder_paths.get_filename_list(FOLDER),
                                   tooltip="models/starcaster_identities/ or output/starcaster_identities/")],
            outputs=[Identity.Output(display_name="identity")],
        )

    @classmethod
    def validate_inputs(cls, identity_file: str | None = None) -> bool | str:
        """Refuse names that are not in the identity folders before anything runs (no path tricks)."""
        return not_in(identity_file, folder_paths.get_filename_list(FOLDER), "identity file", MISSING_FIX) or True

    @classmethod
    def execute(cls, identity_file: str) -> io.NodeOutput:
        with user_errors("STARCaster Load Identity"):
            path = folder_paths.get_full_path(FOLDER, identity_file)
            if cls.validate_inputs(identity_file) is not True or path is None:
                raise IdentityError(f"identity file {identity_file!r} not found; {MISSING_FIX}")
            return io.NodeOutput(load_identity(path))


class MixIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterMixIdentity",
            display_name="STARCaster Mix Identity",
            category=CATEGORY,
            description="A new identity between two others: weight 0 = a, 1 = b. A mix is a new person, so it "
                        "carries no portrait: the model draws it from the embedding alone.",
            inputs=[Identity.Input("a"), Identity.Input("b"),
                    io.Float.Input("weight", default=0.5, min=0.0, max=1.0, step=0.01)],
            outputs=[Identity.Output(display_name="identity")],
        )

    @classmethod
    def execute(cls, a, b, weight: float) -> io.NodeOutput:
        with user_errors("STARCaster Mix Identity"):
            return io.NodeOutput(mix(a, b, weight))


class RandomIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterRandomIdentity",
            display_name="STARCaster Random Identity",
            category=CATEGORY,
            description="A new person drawn from the model's identity space.",
            inputs=[StarcasterModel.Input("model"),
                    io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True)],
            outputs=[Identity.Output(display_name="identity")],
        )

    @classmethod
    def execute(cls, model, seed: int) -> io.NodeOutput:
        with user_errors("STARCaster Random Identity"):
            return io.NodeOutput(random_identity(model.module, seed))


class SaveIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterSaveIdentity",
            display_name="STARCaster Save Identity",
            category=CATEGORY,
            is_output_node=True,
            inputs=[Identity.Input("identity"),
                    io.String.Input("filename_prefix", default="identity")],
            outputs=[],
        )

    @classmethod
    def execute(cls, identity, filename_prefix: str) -> io.NodeOutput:
        out_dir = folder_paths.get_output_directory()
        with user_errors("STARCaster Save Identity"):
            prefix = safe_prefix(filename_prefix, SUBFOLDER)  # never leaves output/starcaster_identities/
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, out_dir)
        path = os.path.join(folder, f"{name}_{counter:05}.safetensors")
        root = os.path.abspath(os.path.join(out_dir, SUBFOLDER))
        assert os.path.commonpath([root, os.path.abspath(path)]) == root, f"{path} is outside {root}"
        save_identity(identity, path)
        return io.NodeOutput(ui={"text": [f"saved {os.path.relpath(path, out_dir)}"]})
