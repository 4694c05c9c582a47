"""What the denoiser is conditioned on, per video and per frame."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Conditioning:
    """Batched conditioning of a video of T frames.

    identity:       (B, Di) identity embeddings (soft constraint: an embedding, not an image)
    audio:          (B, T, K, M) a window of K mel frames (M bands) around every video frame
    camera:         (B, T, 10) per-frame camera features (`camera.pose_features`)
    motion:         (B, T) motion intensity, 1.0 = as trained
    audio_strength: (B,) lip-sync strength, scales the audio embedding away from "no audio"
    use_audio:      (B,) bool; False replaces the audio by the learned "no audio" embedding
    use_identity:   (B,) bool; False replaces the identity by the learned "no identity" one
    reference:      (B, C, H, W) or None: a portrait of the identity in the model's space, read
                    by `reference_frame` models (the identity switch turns it off too)
    use_reference:  (B,) bool or None (None with a reference: all on)
    reference_camera: (B, 10) camera features of the view the portrait shows, or None: the
                    default frontal camera (read by `reference_warp` models)
    reference_views: (B, C, T, H, W) or None: the portrait already turned to every frame's
                    camera (`STARCasterDenoiser.with_reference_views`), so that the sampler's
                    several passes over a chunk warp it once; None: warped in each pass. For a
                    `reference_mask_mouth` model (B, C + 1, T, H, W): the plane of where the
                    mouth-masked portrait is, turned with it, beside it
    """

    identity: torch.Tensor
    audio: torch.Tensor
    camera: torch.Tensor
    motion: torch.Tensor
    audio_strength: torch.Tensor
    use_audio: torch.Tensor
    use_identity: torch.Tensor
    reference: torch.Tensor | None = None
    use_reference: torch.Tensor | None = None
    reference_camera: torch.Tensor | None = None
    reference_views: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        return self.audio.shape[1]

    @property
    def batch(self) -> int:
        return self.identity.shape[0]

    def frame_slice(self, start: int, end: int) -> Conditioning:
        """The conditioning of frames [start, end)."""
        assert 0 <= start < end <= self.frames, f"frames [{start}, {end}) outside 0..{self.frames}"
        views = None if self.reference_views is None else self.reference_views[:, :, start:end]
        return replace(
            self, audio=self.audio[:, start:end], camera=self.camera[:, start:end],
            motion=self.motion[:, start:end], reference_views=views,
        )

    def select(self, index: torch.Tensor) -> Conditioning:
        """The conditioning of the videos `index` (a 1-D index or bool mask over the batch)."""
        return self._map(lambda v: v[index])

    def _map(self, fn) -> Conditioning:
        """`fn` applied to every tensor field (the optional ones stay None)."""
        return Conditioning(**{k: None if v is None else fn(v) for k, v in self.__dict__.items()})

    def reference_on(self) -> torch.Tensor:
        """(B,) float: 1 where a reference portrait is given and the identity is on."""
        on = self.use_identity.float()
        if self.reference is None:
            return torch.zeros_like(on)
        return on if self.use_reference is None else on * self.use_reference.float()

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> Conditioning:
        def move(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype if x.is_floating_point() and dtype else x.dtype)

        return self._map(move)

    def with_flags(self, use_audio: bool, use_identity: bool) -> Conditioning:
        """A copy with audio and/or identity switched off (for classifier-free guidance)."""
        b, dev = self.batch, self.identity.device
        return replace(
            self,
            use_audio=self.use_audio & torch.full((b,), use_audio, device=dev),
            use_identity=self.use_identity & torch.full((b,), use_identity, device=dev),
        )

    @staticmethod
    def cat(items: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch dimension."""
        keys = items[0].__dict__.keys()
        parts = {k: [c.__dict__[k] for c in items] for k in keys}
        for k, v in parts.items():
            assert all(x is None for x in v) or all(x is not None for x in v), f"'{k}' given for some items only"
        return Conditioning(**{k: None if v[0] is None else torch.cat(v) for k, v in parts.items()})


def make_conditioning(
    identity: torch.Tensor, audio: torch.Tensor, camera: torch.Tensor,
    motion: float | torch.Tensor = 1.0, audio_strength: float = 1.0, reference: torch.Tensor | None = None,
) -> Conditioning:
    """Build a batch-1-or-more Conditioning with both audio and identity on (and the reference
    portrait (B, C, H, W), when given)."""
    b, t = audio.shape[:2]
    dev = audio.device
    motion_t = torch.as_tensor(motion, dtype=torch.float32, device=dev).expand(b, t).clone()
    return Conditioning(
        identity=identity.float(), audio=audio.float(), camera=camera.float(), motion=motion_t,
        audio_strength=torch.full((b,), float(audio_strength), device=dev),
        use_audio=torch.ones(b, dtype=torch.bool, device=dev),
        use_identity=torch.ones(b, dtype=torch.bool, device=dev),
        reference=None if reference is None else reference.float().to(dev),
    )
