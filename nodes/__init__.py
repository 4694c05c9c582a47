"""The pack's V3 nodes: thin glue that translates ComfyUI types and calls starcaster_core."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import ComfyExtension, io

from .audio import AudioFeaturesNode
from .camera import CameraTrajectoryNode, LoadCameraTrajectory, SaveCameraTrajectory
from .conditioning import LipSyncConditioning
from .identity import FOLDER as IDENTITY_FOLDER
from .identity import SUBFOLDER as IDENTITY_SUBFOLDER
from .identity import IdentityFromImage, LoadIdentity, MixIdentity, RandomIdentity, SaveIdentity
from .loader import FOLDER as MODEL_FOLDER
from .loader import ModelLoader
from .render import RenderVideo
from .sampler import ARSampler

NODES: list[type[io.ComfyNode]] = [
    ModelLoader, IdentityFromImage, LoadIdentity, MixIdentity, RandomIdentity, SaveIdentity,
    AudioFeaturesNode, LipSyncConditioning, CameraTrajectoryNode, SaveCameraTrajectory, LoadCameraTrajectory,
    ARSampler, RenderVideo,
]


def register_folders() -> None:
    """models/starcaster/ for checkpoints; identities from models/ and from what was saved."""
    models = folder_paths.models_dir
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(models, MODEL_FOLDER))
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (
        folder_paths.folder_names_and_paths[MODEL_FOLDER][0], {".safetensors"})
    for path in (os.path.join(models, IDENTITY_FOLDER),
                 os.path.join(folder_paths.get_output_directory(), IDENTITY_SUBFOLDER)):
        folder_paths.add_model_folder_path(IDENTITY_FOLDER, path)
    folder_paths.folder_names_and_paths[IDENTITY_FOLDER] = (
        folder_paths.folder_names_and_paths[IDENTITY_FOLDER][0], {".safetensors"})


class StarcasterExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
