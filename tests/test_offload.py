"""ComfyUI's lowvram partial loading on our ModelPatcher: every layer that does not fit is cast
from the offload device at use (comfy.ops), and the video must not change.

Runs in-process with the in-process ComfyUI of the fuzz tests (their `pack` fixture).
"""

from __future__ import annotations

import importlib

import pytest
import torch
from test_fuzz import PACKAGE, pack  # noqa: F401  (the in-process ComfyUI fixture)

pytestmark = [pytest.mark.timeout(300)]


@torch.no_grad()
def test_lowvram_partial_load_samples_the_same_video(pack):  # noqa: F811
    import comfy.model_patcher
    import comfy.ops

    config = pack["core"]("config")
    model_mod = importlib.import_module(f"{PACKAGE}.starcaster_core.model")
    sampler, flow, conditioning = pack["core"]("sampler"), pack["core"]("flow"), pack["core"]("conditioning")
    torch.manual_seed(0)
    module = model_mod.STARCaster(config.PRESETS["tiny"], comfy.ops.disable_weight_init).eval()
    for p in module.parameters():
        p.normal_(0, 0.1)
    cfg = module.config
    g = torch.Generator().manual_seed(1)
    cond = conditioning.make_conditioning(
        torch.randn(1, cfg.identity_dim, generator=g), torch.randn(1, 8, cfg.audio_window, cfg.audio_mels, generator=g),
        torch.randn(1, 8, cfg.camera_dim, generator=g),
    )

    def video() -> torch.Tensor:
        return sampler.sample_video(module.denoiser, cond, flow.timesteps(2), chunk=2, context=4,
                                    generator=torch.Generator().manual_seed(2))

    reference = video()
    patcher = comfy.model_patcher.ModelPatcher(module, torch.device("cpu"), torch.device("cpu"))
    patcher.load(torch.device("cpu"), lowvram_model_memory=1)  # nothing fits: every layer is cast at use
    cast = [m for m in module.modules() if getattr(m, "comfy_cast_weights", False)]
    assert module.model_lowvram and len(cast) >= 3 * cfg.depth  # linears, convs, norms of every block
    assert any(isinstance(m, torch.nn.Conv2d) for m in cast)  # the pixel head goes through comfy.ops too
    torch.testing.assert_close(video(), reference, atol=1e-5, rtol=0)
