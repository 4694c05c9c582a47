"""Evaluate a model on one clip: generate, render the world's ground truth, measure, score.

For every clip:
  1. generate the video three times: as asked (motion ``settings.motion``), with a still head
     (motion 0) for the view error (a moving head adds its pose to the view), and with a still
     head and no audio, for where the audio acts (``audio_in_mouth``);
  2. render the ground truth from the world for the same audio and camera: ``gt`` (lip-sync
     rule, seeded blinks and head motion), ``gt2`` (another motion seed, for GT-vs-GT) and
     ``gt_still`` (motion 0; and once more from silence). Its identity is the clip's world
     identity, or a random world identity when the clip's identity is a portrait or a saved
     embedding;
  3. read every video with the meters and compute each metric on the model's video, on the
     ground truth and on a baseline that must score near chance (see ``report.METRIC_INFO``).

Head pose for the pose diversity is the main video's view relative to the still-head video's
view, frame by frame (for the ground truth that is exactly the head pose); this keeps a frozen
video that ignores the camera from scoring the camera's motion as head motion.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import torch

from ..audio import audio_features
from ..generate import GenerateSettings, SpeechConditioning, generate
from ..identity import CropMode, Identity, encode_portrait, face_crop
from ..model import STARCaster
from ..mouth_box import box_mask
from ..synthetic.identity import sample_identity
from ..synthetic.lipsync import frame_count
from ..synthetic.motion import MotionStyle
from ..synthetic.render import render_portrait
from ..synthetic.sequences import talking_sequence
from ..synthetic.speech import SAMPLE_RATE, to_mono_16k
from . import metrics as M
from .geometry import head_pose_from_view
from .inputs import Clip, EvalInputError
from .meters import Meters

log = logging.getLogger(__name__)

GT_SIZE = 64
RANDOM_GT_IDENTITY = 20_000  # GT identity seed (+ generation seed) when the clip has no world identity
WRONG_IDENTITY = 30_000  # the "wrong identity" baseline's seed (+ generation seed)
STILL = MotionStyle(base=(0.0, 0.0, 0.0), gain=(0.0, 0.0, 0.0), offset=(0.0, 0.0, 0.0), nod=0.0)
OFFSET_BASELINE = 3  # lip-sync offset baseline: the ground truth's mouth delayed by 3 frames
SHUFFLE_BLOCK_S = 0.2  # shuffled-audio baseline: the rule's mouth track in 0.2 s blocks, reordered
WRONG_VIEW = (35.0, 10.0)  # wrong-camera baseline: a random fixed world view within +- these
STRIP_EVERY, STRIP_FRAMES = 4, 8  # frames of the ground-truth-over-model strip: every 4th, at most 8


@dataclass(frozen=True)
class EvalSettings:
    generate: GenerateSettings = GenerateSettings()  # the sampler node's defaults
    motion: float = 1.0
    lip_sync: float = 1.0
    fps: float | None = None  # None: the model's training fps
    drift_window_s: float = 10.0  # early / late windows of the drift ratio (at most a third each)
    crop: CropMode = "center"  # how portraits are cropped for the identity encoder
    portrait: bool = True  # False: condition on the embedding alone, as a mixed or sampled identity does


@dataclass(frozen=True)
class Score:
    """One metric on the model's video, on the ground truth and on its chance baseline."""

    model: float | None
    gt: float | None
    baseline: float | None


@dataclass(frozen=True)
class ClipResult:
    name: str
    scores: dict[str, Score]
    info: dict = field(default_factory=dict)
    strip: torch.Tensor | None = None  # (2, K, 3, H, W) 0..1: ground truth over the model, every STRIP_EVERY-th


@torch.inference_mode()
def generate_frames(model: STARCaster, speech: SpeechConditioning, camera: torch.Tensor,
                    settings: GenerateSettings, device: torch.device) -> torch.Tensor:
    """The whole generated video as (T, 3, H, W) in 0..1."""
    chunks = [x.float().cpu() for _, x in generate(model, speech, camera, settings, device=device)]
    return ((torch.cat(chunks) + 1.0) / 2.0).clamp(0.0, 1.0)


@torch.inference_mode()
def encode_frames(model: STARCaster, frames: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """The model's own identity encoder on (T, 3, H, W) frames in 0..1 -> (T, Di)."""
    dev = next(model.identity_encoder.parameters()).device
    out = [model.identity_encoder(frames[i:i + batch].to(dev) * 2.0 - 1.0).float().cpu()
           for i in range(0, frames.shape[0], batch)]
    return torch.cat(out)


def _portrait_frame(image: torch.Tensor, crop: CropMode) -> torch.Tensor:
    """(H, W, 3) 0..1 -> (1, 3, S, S) 0..1, cropped as the identity encoder sees it."""
    return (face_crop(image, crop)[None] + 1.0) / 2.0


def _conditioning_identity(model: STARCaster, meters: Meters, clip: Clip, crop: CropMode):
    """(Identity to condition on, meter-space target vector or None)."""
    ident = clip.identity
    if ident.kind == "world":
        portrait = render_portrait(ident.world, size=GT_SIZE)  # (H, W, 3): a frontal, neutral portrait
        return encode_portrait(model, portrait, "full"), ident.world.identity_vector()
    if ident.kind == "portrait":
        target = meters.measure(_portrait_frame(ident.portrait, crop)).identity[0]
        return encode_portrait(model, ident.portrait, crop), target
    return ident.saved, None


def _fit(camera: torch.Tensor, n: int) -> torch.Tensor:
    """A (T, 4) camera cut or held to n rows."""
    if camera.shape[0] >= n:
        return camera[:n]
    return torch.cat([camera, camera[-1:].expand(n - camera.shape[0], 4)])


def _drift(feats, ref_feats, noise_feats, mouth, gt_mouth, window: int) -> float:
    """Drift ratio of a video's features (T, F) and mouth (T,) against the ground truth's: the
    quality of the first and the last window (``metrics.window_quality``), the Frechet distance
    in units of the distance of noise frames to the same ground-truth window."""
    early, late = M.drift_windows(ref_feats.shape[0], window)

    def quality(w: slice) -> float:
        scale = M.frechet_distance(noise_feats[w], ref_feats[w])
        return M.window_quality(feats[w], ref_feats[w], scale, mouth[w], gt_mouth[w])

    return M.drift_ratio(quality(early), quality(late))


def evaluate_clip(model: STARCaster, meters: Meters, clip: Clip, settings: EvalSettings,
                  device: torch.device | str = "cpu") -> ClipResult:
    cfg, device = model.config, torch.device(device)
    if cfg.space != "pixel":
        raise EvalInputError(f"model '{cfg.name}' works in a VAE latent space; this evaluator grades pixel-space "
                             "models (decode latent models' frames in ComfyUI and score them with eval.metrics)")
    fps = float(settings.fps or cfg.fps)
    gs = settings.generate
    g = torch.Generator().manual_seed(gs.seed + 1)
    t0 = time.time()

    # 1. the model's videos: as asked, and with a still head for the view error
    features = audio_features(clip.wave, clip.sample_rate, fps, cfg)
    camera = clip.camera(features.n_frames)  # (T, 4)
    identity, target = _conditioning_identity(model, meters, clip, settings.crop)
    if not settings.portrait:  # the embedding the portrait gave, without the portrait itself
        identity = replace(identity, reference=None)
    speech = SpeechConditioning(features, identity, settings.lip_sync, settings.motion)
    gen = generate_frames(model, speech, camera, gs, device)
    gen_still = generate_frames(model, SpeechConditioning(features, identity, settings.lip_sync, 0.0),
                                camera, gs, device)
    gen_silent = generate_frames(model, SpeechConditioning(features, identity, 0.0, 0.0), camera, gs, device)
    t_gen = time.time() - t0

    # 2. the world's ground truth for the same audio and camera
    wave16 = to_mono_16k(clip.wave, clip.sample_rate)
    n_gt = frame_count(len(wave16), SAMPLE_RATE, fps)
    cam_gt = _fit(camera, n_gt)
    world = clip.identity.world or sample_identity(RANDOM_GT_IDENTITY + gs.seed)

    def render(seed: int, motion: MotionStyle = MotionStyle(), cam: torch.Tensor = cam_gt, wave=wave16) -> dict:
        gen_ = torch.Generator().manual_seed(seed)
        return talking_sequence(world, wave, fps, cam, gen_, size=GT_SIZE, motion=motion)

    gt, gt2, gt_still = render(gs.seed), render(gs.seed + 1), render(gs.seed, STILL)
    n = min(gen.shape[0], n_gt)
    gen, gen_still, gen_silent, camera = gen[:n], gen_still[:n], gen_silent[:n], camera[:n]
    gt_frames, gt2_frames, still_frames = gt["frames"][:n], gt2["frames"][:n], gt_still["frames"][:n]
    gt_mouth = gt["mouth"][:n]
    noise = (0.5 + 0.25 * torch.randn(gt_frames.shape, generator=g)).clamp(0.0, 1.0)
    t_gt = time.time() - t0 - t_gen

    # 3. measure everything
    m_gen, m_still, m_gt = meters.measure(gen), meters.measure(gen_still), meters.measure(gt_frames)
    m_gt2, m_gt_still, m_noise = meters.measure(gt2_frames), meters.measure(still_frames), meters.measure(noise)
    scores: dict[str, Score] = {}

    shuffled = M.shuffle_blocks(gt_mouth, max(1, round(SHUFFLE_BLOCK_S * fps)), g)  # speech at the wrong moments
    scores["lipsync_r"] = Score(M.lipsync_r(m_gen.mouth, gt_mouth), M.lipsync_r(m_gt.mouth, gt_mouth),
                                M.lipsync_r(m_gt.mouth, shuffled))
    held_gen, held_gt = (meters.measure(M.hold_colour(f)).mouth for f in (gen, gt_frames))  # a tint reads as nothing
    scores["lipsync_r_no_tint"] = Score(M.lipsync_r(held_gen, gt_mouth), M.lipsync_r(held_gt, gt_mouth),
                                        M.lipsync_r(held_gt, shuffled))

    # the still head's mouth boxes at each video's size (n, H, W): the model's frames and the GT's
    boxes = gt_still["mouth_box"][:n]
    inside_gen, inside_gt = (box_mask(boxes, (n, *f.shape[-2:])) for f in (gen_still, still_frames))
    silent_gt = render(gs.seed, STILL, wave=wave16 * 0.0)["frames"][:n]  # same blinks, shut mouth
    scores["audio_in_mouth"] = Score(M.audio_share_in_box(gen_still, gen_silent, inside_gen),
                                     M.audio_share_in_box(still_frames, silent_gt, inside_gt),
                                     float(inside_gen.float().mean()))  # a change spread evenly over the frame
    late = torch.cat([m_gt.mouth[:OFFSET_BASELINE], m_gt.mouth[:-OFFSET_BASELINE]])  # GT, OFFSET_BASELINE frames late
    scores["lipsync_offset"] = Score(float(M.lipsync_offset(m_gen.mouth, gt_mouth)),
                                     float(M.lipsync_offset(m_gt.mouth, gt_mouth)),
                                     float(M.lipsync_offset(late, gt_mouth)))

    u = torch.rand(2, generator=g) * 2 - 1
    wrong = camera.clone()
    wrong[:, 0], wrong[:, 1] = WRONG_VIEW[0] * u[0], WRONG_VIEW[1] * u[1]
    scores["view_error_deg"] = Score(M.view_error_deg(m_still.view, camera), M.view_error_deg(m_gt_still.view, camera),
                                     M.view_error_deg(m_gt_still.view, wrong))
    follow_gt = M.camera_follow(m_gt_still.view, camera)  # NaN for a camera that barely turns: nothing to render
    follow_front = math.nan
    if not math.isnan(follow_gt):
        front = torch.cat([torch.zeros_like(cam_gt[:, :3]), cam_gt[:, 3:]], dim=1)  # (T, 4): the camera ignored
        follow_front = M.camera_follow(meters.measure(render(gs.seed, STILL, front)["frames"][:n]).view, camera)
    scores["camera_follow"] = Score(M.camera_follow(m_still.view, camera), follow_gt, follow_front)

    wrong_world = sample_identity(WRONG_IDENTITY + gs.seed)
    if target is not None:
        gt_id = M.identity_distance(m_gt.identity, target) if clip.identity.kind == "world" else None
        scores["identity_distance"] = Score(M.identity_distance(m_gen.identity, target), gt_id,
                                            M.identity_distance(m_gt.identity, wrong_world.identity_vector()))
    else:
        scores["identity_distance"] = Score(None, None, None)

    scale = model.identity_std.float().cpu()
    emb = identity.embedding.float()
    wrong_emb = encode_portrait(model, render_portrait(wrong_world, size=GT_SIZE), "full").embedding
    enc_gt = encode_frames(model, gt_frames)
    scores["identity_distance_model"] = Score(
        M.identity_distance(encode_frames(model, gen), emb, scale),
        M.identity_distance(enc_gt, emb, scale) if clip.identity.kind == "world" else None,
        M.identity_distance(enc_gt, wrong_emb, scale))

    scores["fidelity_fd"] = Score(M.frechet_distance(m_gen.features, m_gt.features),
                                  M.frechet_distance(m_gt2.features, m_gt.features),
                                  M.frechet_distance(m_noise.features, m_gt.features))

    scores["continuity"] = Score(M.continuity_ratio(gen, gs.chunk), M.continuity_ratio(gt_frames, gs.chunk),
                                 M.continuity_ratio(M.shuffle_blocks(gt_frames, gs.chunk, g), gs.chunk))

    window = int(round(settings.drift_window_s * fps))
    fade = torch.linspace(0.0, 1.0, n).view(n, 1, 1, 1)
    m_fade = meters.measure((1 - fade) * gt2_frames + fade * noise)
    scores["drift_ratio"] = Score(
        _drift(m_gen.features, m_gt.features, m_noise.features, m_gen.mouth, gt_mouth, window),
        _drift(m_gt2.features, m_gt.features, m_noise.features, m_gt2.mouth, gt_mouth, window),
        _drift(m_fade.features, m_gt.features, m_noise.features, m_fade.mouth, gt_mouth, window))
    profile = M.window_profile(m_gen.features, m_gt.features, m_noise.features, m_gen.mouth, gt_mouth, window)

    # head pose = the main video's view relative to the still-head video's view of the same frame
    # (not to the requested camera: a frozen video would otherwise "move its head" with the camera)
    def diversity(view: torch.Tensor, still_view: torch.Tensor) -> float:
        return M.pose_diversity(head_pose_from_view(view, still_view))

    m_gt_still2 = meters.measure(render(gs.seed + 1, STILL)["frames"][:n])  # other blinks, same still head
    scores["pose_diversity_deg"] = Score(diversity(m_gen.view, m_still.view), diversity(m_gt.view, m_gt_still.view),
                                         diversity(m_gt_still2.view, m_gt_still.view))

    info = {"frames": n, "seconds": round(n / fps, 2), "fps": fps, "identity": clip.identity.label,
            "gt_identity": "clip's world identity" if clip.identity.world else "random world identity",
            "trajectory": clip.trajectory_label, "generate_s": round(t_gen, 1), "render_gt_s": round(t_gt, 1),
            "total_s": round(time.time() - t0, 1),
            "windows": [{"start_s": round(a / fps, 2), "fidelity": round(f, 3), "sync": round(r, 3)}
                        for a, f, r in profile]}  # the drift ratio's two factors, window by window
    log.info("%s: %s", clip.name, info)
    shown = gen[::STRIP_EVERY][:STRIP_FRAMES]  # (K, 3, h, w): the model's frames, at the ground truth's size
    shown = torch.nn.functional.interpolate(shown, size=gt_frames.shape[-2:], mode="bilinear", antialias=True)
    strip = torch.stack([gt_frames[::STRIP_EVERY][:STRIP_FRAMES], shown.clamp(0.0, 1.0)])  # (2, K, 3, H, W)
    return ClipResult(clip.name, scores, info, strip)


def summarise(results: list[ClipResult]) -> dict[str, Score]:
    """Mean of every score over the clips (None where no clip has it)."""

    def mean(values: list[float | None]) -> float | None:
        vals = [v for v in values if v is not None and not math.isnan(v)]
        return sum(vals) / len(vals) if vals else None

    names = list(results[0].scores)
    return {k: Score(*(mean([getattr(r.scores[k], f) for r in results]) for f in ("model", "gt", "baseline")))
            for k in names}


def conditioning_identity(model: STARCaster, meters: Meters, clip: Clip, crop: CropMode = "center") -> Identity:
    """The identity a clip conditions the model on (exposed for scripts)."""
    return _conditioning_identity(model, meters, clip, crop)[0]
