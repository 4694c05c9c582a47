"""Training clips in memory, sampled as random windows: one interface for any dataset.

A dataset is a directory of safetensors shards (see `starcaster_core.synthetic.shards`): per
sequence `frames` uint8 (T, 3, H, W), `audio` int16 PCM, `camera` (T, 4) and optionally
`identity` (Di,), `pose` (T, 3), `mouth` (T,), `mouth_box` (T, 4), `portrait` uint8 (3, H, W)
(a neutral, frontal one: taken from the default camera). `mouth_box` is (cx, cy, w, h) in
[0, 1] per frame, where the mouth can be: the lip reader crops there (without it, and with
`--mouth-boxes 0`, at a fixed box around the mouth of a demo frame).
Real footage converted to that layout trains the same way (without `identity`, the encoder is
trained end to end; without `portrait`, the portrait is always another frame of the clip).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..audio import audio_features
from ..camera import FRONTAL, head_relative, pose_features
from ..config import ModelConfig
from ..synthetic.shards import ShardDataset

log = logging.getLogger(__name__)
OPTIONAL = ("identity", "pose", "mouth", "mouth_box")
TURNED_DEG = 1.0  # portrait_when_turned: a clip whose camera yaw or pitch is beyond this is "turned"


@dataclass
class Sequences:
    """Whole sequences of one kind, stacked (all of one length)."""

    frames: torch.Tensor  # (N, T, 3, H, W) uint8
    audio: torch.Tensor  # (N, T, K, M) features
    camera: torch.Tensor  # (N, T, 4)
    talking: bool
    extra: dict[str, torch.Tensor]  # OPTIONAL keys present in the data
    portraits: torch.Tensor | None = None  # (N, 3, H, W) uint8: each sequence's portrait, if the data has them

    def __len__(self) -> int:
        return self.frames.shape[0]


def load_sequences(root: str | Path, config: ModelConfig) -> Sequences:
    data = ShardDataset(root, float_frames=False)
    talking = data.index.get("kind", "talking") == "talking"
    frames, feats, cams, portraits, extra = [], [], [], [], {k: [] for k in OPTIONAL}
    for item in data:
        frames.append(item["frames"])
        if "portrait" in item:
            portraits.append(item["portrait"])
        n = item["frames"].shape[0]
        wav = item["audio"].float()
        f = audio_features(wav.numpy(), int(item["sample_rate"]), float(item["fps"]), config).features
        assert f.shape[0] >= n, f"{root}: audio covers {f.shape[0]} frames, video has {n}"
        feats.append(f[:n])  # the clip's audio spans its frames (a last partial frame is cut)
        cams.append(item["camera"].float())
        for k in OPTIONAL:
            if k in item:
                extra[k].append(item[k].float())
    extra = {k: torch.stack(v) for k, v in extra.items() if len(v) == len(frames)}
    log.info("loaded %d %s sequences from %s", len(frames), "talking" if talking else "orbit", root)
    return Sequences(torch.stack(frames), torch.stack(feats), torch.stack(cams), talking, extra,
                     torch.stack(portraits) if len(portraits) == len(frames) else None)


class ClipSampler:
    """Random windows of `clip_frames` frames from talking and (optionally) orbit sequences.

    Each clip comes with a reference image (the identity's portrait): the sequence's own portrait
    for a `portrait_share` of clips when the data has them, otherwise another frame of the clip.
    With `portrait_when_turned`, every clip whose camera is turned from the front takes the
    portrait: another frame of such a clip shows the very view to draw, and a model that can copy
    it never learns to follow its camera (README, Status, session 11).

    With `pose_in_camera`, the cameras of data with `pose` tracks (those of the clip's frames and
    the portrait's) are relative to the head (`camera.head_relative`), as `generate` hands the
    model the camera with its head-pose prior's turns: then the camera says where the head faces
    in every frame, as at inference, instead of leaving the model to guess the head's own turns.
    """

    def __init__(self, talking: Sequences, orbit: Sequences | None, config: ModelConfig, clip_frames: int,
                 portrait_share: float = 1.0, portrait_when_turned: bool = False, pose_in_camera: bool = False):
        self.talking, self.orbit, self.config, self.clip_frames = talking, orbit, config, clip_frames
        self.portrait_share, self.portrait_when_turned = portrait_share, portrait_when_turned
        self.pose_in_camera = pose_in_camera
        size = (config.height, config.width)
        for seqs in (talking, orbit):
            if seqs is not None:
                assert tuple(seqs.frames.shape[-2:]) == size, f"data frames {tuple(seqs.frames.shape[-2:])} != {size}"
                assert seqs.frames.shape[1] >= clip_frames, "sequences shorter than the training clip"

    @property
    def pose_ref(self) -> float:
        """Typical head-pose spread (degrees) of a talking window: motion intensity 1.0."""
        pose = self.talking.extra.get("pose")
        if pose is None:
            return 1.0
        return float(pose[:, : self.clip_frames].std(dim=1).mean(dim=1).median().clamp(min=0.1))

    def identity_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        ids = self.talking.extra.get("identity")
        if ids is None:
            return None
        return ids.mean(0), ids.std(0).clamp(min=0.05)

    def prior_pairs(self, every: int = 4, batch: int = 64):
        """(identity beside camera features (n, Di + 10), frames (n, 3, H, W)) over every
        `every`-th frame of all sequences, for `STARCasterDenoiser.fit_prior`; nothing without
        ground-truth identities."""
        for seqs in (self.talking, self.orbit):
            if seqs is None or "identity" not in seqs.extra:
                continue
            for i in range(0, len(seqs), batch):
                cam = pose_features(seqs.camera[i : i + batch, ::every])  # (n, T', 10)
                ident = seqs.extra["identity"][i : i + batch, None].expand(-1, cam.shape[1], -1)  # (n, T', Di)
                frames = seqs.frames[i : i + batch, ::every].float() / 127.5 - 1  # (n, T', 3, H, W)
                yield torch.cat([ident, cam], dim=-1).flatten(0, 1), frames.flatten(0, 1)

    def _take(self, seqs: Sequences, n: int, g: torch.Generator) -> dict:
        idx = torch.randint(len(seqs), (n,), generator=g)
        start = torch.randint(seqs.frames.shape[1] - self.clip_frames + 1, (n,), generator=g)
        win = start[:, None] + torch.arange(self.clip_frames)[None]  # (n, T)
        rows = idx[:, None]

        frames = seqs.frames[rows, win].float() / 127.5 - 1  # (n, T, 3, H, W)
        ref_t = torch.randint(seqs.frames.shape[1], (n,), generator=g)
        reference = seqs.frames[idx, ref_t]  # (n, 3, H, W) uint8: another frame
        camera, ref_camera = seqs.camera[rows, win], seqs.camera[idx, ref_t]  # (n, T, 4), (n, 4) the portrait's
        if self.pose_in_camera and "pose" in seqs.extra:  # the cameras as the turned head sees them
            pose = seqs.extra["pose"]
            camera = head_relative(camera.flatten(0, 1), pose[rows, win].flatten(0, 1)).view_as(camera)
            ref_camera = head_relative(ref_camera, pose[idx, ref_t])
        if seqs.portraits is not None:  # or, for a share of the clips, the (frontal) portrait
            own = torch.zeros(n, dtype=torch.bool)
            if self.portrait_share > 0:
                own = torch.rand(n, generator=g) < self.portrait_share  # (n,)
            if self.portrait_when_turned:  # a clip filmed from a turned camera: never a frame of that view
                own |= seqs.camera[idx, start, :2].abs().amax(dim=1) > TURNED_DEG
            reference = torch.where(own[:, None, None, None], seqs.portraits[idx], reference)
            ref_camera = torch.where(own[:, None], torch.tensor(FRONTAL), ref_camera)
        reference = reference.float() / 127.5 - 1
        s = self.config.identity_image
        batch = {
            "frames": frames, "audio": seqs.audio[rows, win], "camera": camera,
            # that frame as the identity encoder reads it, and as is (a reference_frame model's portrait)
            "reference": F.interpolate(reference, size=(s, s), mode="bilinear", antialias=True),
            "portrait": reference,
            "portrait_camera": ref_camera,  # the data's own portraits are frontal
            "talking": torch.full((n,), seqs.talking),
        }
        for k, v in seqs.extra.items():
            batch[k] = v[idx] if k == "identity" else v[rows, win]
        return batch

    def sample(self, batch: int, orbit_share: float, g: torch.Generator) -> dict:
        n_orbit = int(round(batch * orbit_share)) if self.orbit is not None else 0
        parts = [self._take(self.talking, batch - n_orbit, g)]
        if n_orbit:
            parts.append(self._take(self.orbit, n_orbit, g))
        keys = set.intersection(*(set(p) for p in parts))
        out = {k: torch.cat([p[k] for p in parts]) for k in keys}
        out["pose_ref"] = self.pose_ref
        return out
