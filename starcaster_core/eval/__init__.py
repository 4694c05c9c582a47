"""Evaluation: metrics, the meters that read the synthetic world's ground truth from frames, and
``python -m starcaster_core.eval`` (scores a checkpoint against the world's ground truth).

    metrics.py        pure metric functions (lip sync r, view error, identity distance, drift,
                      pose diversity, Frechet distance, continuity)
    geometry.py       head-relative view angles (camera composed with head pose)
    meters.py         the MouthMeter / PoseMeter / IdentityMeter CNNs, load / save
    meter_training.py training them on fresh ground-truth renders (``python -m ...eval.meters``)
    inputs.py         clips from audio files, identities, trajectories; held-out world clips
    evaluate.py       one clip: generate, render the ground truth, measure, score
    report.py         the printed table (baselines, targets, what each metric needs)
"""

from .metrics import (
    continuity_ratio,
    drift_ratio,
    frechet_distance,
    identity_distance,
    lipsync_offset,
    lipsync_r,
    pose_diversity,
    view_error_deg,
    window_quality,
)

# Only the pure metrics here: the meters module is also a script (`python -m ...eval.meters`),
# so importing it from the package would run it twice.
__all__ = [
    "continuity_ratio", "drift_ratio", "frechet_distance", "identity_distance", "lipsync_offset", "lipsync_r",
    "pose_diversity", "view_error_deg", "window_quality",
]
