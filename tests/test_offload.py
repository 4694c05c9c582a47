"""In-process node tests of model management and sampler options: ComfyUI's lowvram partial
loading on our ModelPatcher (every layer that does not fit is cast from the offload device at
use, and the video must not change), a failed torch.compile, and the sampler's shift input.

Runs in-process with the in-process ComfyUI of the fuzz tests (their `pack` fixture).
"""

from __future__ import annotations

import importlib

import pytest
import torch
from test_fuzz import PACKAGE, pack  # noqa: F401  (the in-process ComfyUI fixture)

pytestmark = [pytest.mark.timeout(300)]


def tiny_node_model(comfy_pack: dict, random_weights: bool = True):
    """A fresh tiny model built with comfy.ops, on a ModelPatcher and a STARCASTER_MODEL socket,
    and a 4-frame speech conditioning for it: (module, LoadedModel, SpeechConditioning)."""
    import comfy.model_patcher
    import comfy.ops

    config, audio = comfy_pack["core"]("config"), comfy_pack["core"]("audio")
    identity, generate = comfy_pack["core"]("identity"), comfy_pack["core"]("generate")
    model_mod = importlib.import_module(f"{PACKAGE}.starcaster_core.model")
    loader = importlib.import_module(f"{PACKAGE}.nodes.loader")
    torch.manual_seed(0)
    module = model_mod.STARCaster(config.PRESETS["tiny"], comfy.ops.disable_weight_init).eval()
    if random_weights:  # an untrained adaLN-Zero model is constant: equality tests would be vacuous
        for p in module.parameters():
            p.data.normal_(0, 0.1)
    patcher = comfy.model_patcher.ModelPatcher(module, torch.device("cpu"), torch.device("cpu"))
    cfg = module.config
    feats = audio.AudioFeatures(torch.rand(4, cfg.audio_window, cfg.audio_mels), 25.0, 4 / 25.0)
    return module, loader.LoadedModel(patcher, "tiny"), generate.SpeechConditioning(
        feats, identity.random_identity(module, 0))


@torch.no_grad()
def test_lowvram_partial_load_samples_the_same_video(pack):  # noqa: F811
    sampler, flow = pack["core"]("sampler"), pack["core"]("flow")
    module, model, speech = tiny_node_model(pack)
    cfg, g = module.config, torch.Generator().manual_seed(1)
    cond = pack["core"]("conditioning").make_conditioning(
        torch.randn(1, cfg.identity_dim, generator=g), torch.randn(1, 8, cfg.audio_window, cfg.audio_mels, generator=g),
        torch.randn(1, 8, cfg.camera_dim, generator=g),
    )

    def video() -> torch.Tensor:
        return sampler.sample_video(module.denoiser, cond, flow.timesteps(2), chunk=2, context=4,
                                    generator=torch.Generator().manual_seed(2))

    reference = video()
    model.patcher.load(torch.device("cpu"), lowvram_model_memory=1)  # nothing fits: every layer is cast at use
    cast = [m for m in module.modules() if getattr(m, "comfy_cast_weights", False)]
    assert module.model_lowvram and len(cast) >= 3 * cfg.depth  # linears, convs, norms of every block
    assert any(isinstance(m, torch.nn.Conv2d) for m in cast)  # the pixel head goes through comfy.ops too
    torch.testing.assert_close(video(), reference, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")  # expected: the caches are off on purpose
def test_failed_compile_is_an_actionable_sampler_error(pack, monkeypatch):  # noqa: F811
    """With compile on and no working C++ compiler, the sampler says to switch compile off."""
    import torch._inductor.config

    sampler_node = importlib.import_module(f"{PACKAGE}.nodes.sampler")
    module, model, speech = tiny_node_model(pack, random_weights=False)
    module.denoiser.compile_blocks()  # what the loader does with compile on
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(torch._inductor.config, "force_disable_caches", True)  # no compiled code from earlier tests
    torch._dynamo.reset()  # compile afresh, with the broken compiler
    with pytest.raises(ValueError, match=r"^STARCaster AR Sampler: torch.compile could not compile .*"
                                         r"switch 'compile' off in the STARCaster Model Loader"):
        sampler_node.ARSampler.execute(model, speech, 0, 1, 1.0, 1.0, 2, 2)
    torch._dynamo.reset()


def test_sampler_shift_input_reaches_the_schedule(pack):  # noqa: F811
    """The AR Sampler's optional `shift` changes the video; left out, it is the core default."""
    sampler_node = importlib.import_module(f"{PACKAGE}.nodes.sampler")
    generate = pack["core"]("generate")
    _, model, speech = tiny_node_model(pack)

    def video(**kw) -> torch.Tensor:
        return sampler_node.ARSampler.execute(model, speech, 0, 3, 1.0, 1.0, 2, 2, **kw).args[0]

    assert generate.GenerateSettings().shift == 1.0
    torch.testing.assert_close(video(), video(shift=1.0), atol=0, rtol=0)
    assert (video(shift=3.0) - video(shift=1.0)).abs().max() > 1e-3
