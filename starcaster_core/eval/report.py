"""The metrics table: what each metric needs, its chance baseline, its target, pass / fail."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange

from .evaluate import ClipResult, Score


@dataclass(frozen=True)
class MetricInfo:
    baseline: str  # what the baseline column is (it should score near chance)
    target: str  # the target a trained model is checked against
    needs: str  # what ground truth the metric needs


METRIC_INFO: dict[str, MetricInfo] = {
    "lipsync_r": MetricInfo("shuffled audio", ">= 0.85", "audio only (the lip-sync rule)"),
    "lipsync_r_no_tint": MetricInfo("shuffled audio", ">= 0.85", "audio only; each frame's mean colour held"),
    "audio_in_mouth": MetricInfo("speech changes all", ">= 0.5 (ours)", "audio; a 3rd generation without it"),
    "lipsync_offset": MetricInfo("GT 3 frames late", "0", "audio only (frames; > 0 = video late)"),
    "view_error_deg": MetricInfo("wrong camera", "<= 5", "requested camera (still-head clip)"),
    "camera_follow": MetricInfo("camera ignored", ">= 0.8", "requested camera (still-head clip)"),
    "identity_distance": MetricInfo("wrong identity", "< baseline", "world identity or portrait (meter)"),
    "identity_distance_model": MetricInfo("wrong identity", "< baseline", "conditioning embedding (model encoder)"),
    "fidelity_fd": MetricInfo("noise frames", "<= 2x GT", "GT renders (world identity)"),
    "continuity": MetricInfo("GT, chunks shuffled", "<= 1.2", "nothing"),
    "drift_ratio": MetricInfo("GT fading to noise", ">= 0.95", "GT renders + audio"),
    "pose_diversity_deg": MetricInfo("reference-locked", "> baseline", "still-head clip (camera reference)"),
}
NOTES = (
    "ground truth = the world rendered for the same audio and camera (lip-sync rule, seeded head motion);",
    "  GT column: the metric on that ground truth (fidelity: a second GT render vs the first).",
    "view_error_deg and camera_follow are measured on a second generation with a still head (motion 0);",
    "  camera_follow is n/a on clips whose camera hardly turns (static, zoom, dolly). Pose diversity",
    "  is the head pose of the main video relative to that still-head video (continuity: n/a = frozen video).",
    "audio_in_mouth: share of what the audio changes (still head, with vs without it) inside the mouth box;",
    "  the baseline is the box's share of the frame (a change spread over all of it).",
    "identity/fidelity/drift compare with a world identity: with a portrait or saved identity the GT",
    "  uses a random world identity, so read those rows as relative numbers only.",
    "windows (each clip): the model's fidelity (exp(-FD / FD of noise frames)) and lip sync r in the drift",
    "  ratio's windows, one after another from the start; the ratio is the product in the clip's last window",
    "  (its last frames, which end the last whole window shown only when the clip is a whole number of them)",
    "  over the product in its first.",
)


def check(name: str, s: Score) -> str:
    """'pass' / 'FAIL' / '' (no target or no value) of a model score against its target."""
    v = s.model
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    rules = {
        "lipsync_r": lambda: v >= 0.85,
        "lipsync_r_no_tint": lambda: v >= 0.85,
        "lipsync_offset": lambda: v == 0,
        "audio_in_mouth": lambda: v >= 0.5,  # most of what the speech changes is the mouth
        "view_error_deg": lambda: v <= 5.0,
        "camera_follow": lambda: v >= 0.8,
        "continuity": lambda: v <= 1.2,
        "drift_ratio": lambda: v >= 0.95,
        "fidelity_fd": lambda: s.gt is not None and v <= 2.0 * s.gt,
        "pose_diversity_deg": lambda: s.baseline is not None and v > s.baseline,
        "identity_distance": lambda: s.baseline is not None and v < s.baseline,
        "identity_distance_model": lambda: s.baseline is not None and v < s.baseline,
    }
    if name not in rules:
        return ""
    return "pass" if rules[name]() else "FAIL"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.3f}"


def format_table(scores: dict[str, Score], title: str = "") -> str:
    head = ("metric", "model", "GT", "baseline", "baseline is", "target", "check", "needs")
    rows = [head]
    for name, s in scores.items():
        info = METRIC_INFO.get(name, MetricInfo("", "", ""))
        rows.append((name, _fmt(s.model), _fmt(s.gt), _fmt(s.baseline), info.baseline, info.target,
                     check(name, s), info.needs))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [title] if title else []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_clips(results: list[ClipResult]) -> str:
    """One line per clip: its info and model scores."""
    lines = []
    for r in results:
        vals = " ".join(f"{k}={_fmt(s.model)}" for k, s in r.scores.items())
        where = f"{r.info.get('identity')}, {r.info.get('trajectory')}, {r.info.get('seconds')} s"
        lines.append(f"{r.name} [{where}]: {vals}")
        if r.info.get("windows"):
            steps = " ".join(f"{w['start_s']:g}s {w['fidelity']:.2f}x{w['sync']:.2f}" for w in r.info["windows"])
            lines.append(f"  windows (start: fidelity x sync): {steps}")
    return "\n".join(lines)


def to_json(results: list[ClipResult], summary: dict[str, Score]) -> dict:
    def clean(v: float | None) -> float | None:
        return None if v is None or math.isnan(v) else v

    def row(s: Score) -> dict:
        return {"model": clean(s.model), "gt": clean(s.gt), "baseline": clean(s.baseline)}

    return {
        "summary": {k: {**row(s), "check": check(k, s), **METRIC_INFO[k].__dict__} for k, s in summary.items()},
        "clips": [{"name": r.name, "info": r.info, "scores": {k: row(s) for k, s in r.scores.items()}}
                  for r in results],
    }


def write_strip(results: list[ClipResult], path: str | Path, scale: int = 3) -> None:
    """One PNG of every clip's strip: per clip a row of ground-truth frames over a row of the
    model's (the frames the metrics read), each pixel `scale` x `scale`. Look at them: the
    numbers do not show a texture or a faint mouth."""
    import cv2

    strips = [r.strip for r in results if r.strip is not None]
    if not strips:
        return
    k = max(s.shape[1] for s in strips)
    rows = []
    for s in strips:  # (2, K, 3, H, W) -> two rows (H, k * W, 3), short clips padded with black
        s = torch.cat([s, s.new_zeros(2, k - s.shape[1], *s.shape[2:])], dim=1)
        rows.append(rearrange(s, "r k c h w -> (r h) (k w) c"))
    image = (torch.cat(rows).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
