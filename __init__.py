"""STARCaster for ComfyUI: audio-driven, free-viewpoint talking portraits (V3 node pack)."""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes import StarcasterExtension, register_folders

    register_folders()
    return StarcasterExtension()
