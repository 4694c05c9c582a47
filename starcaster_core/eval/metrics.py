"""The evaluation metrics: pure functions on tensors (no model, no meters, no I/O).

Conventions: frames (T, 3, H, W) in 0..1; angles in degrees; camera (T, 4) =
(yaw, pitch, roll, distance) as in ``camera.py``; head pose / view (T, 3) = (yaw, pitch, roll).

=====================  =====================================================================
metric                 definition (better is)
=====================  =====================================================================
lipsync_r              Pearson r of the mouth opening measured on the frames and the opening
                       the lip-sync rule derives from the audio (higher; 1 = perfect)
lipsync_r_no_tint      lipsync_r measured on the frames with each one's mean colour set to the
                       clip's (``hold_colour``): a tint of whole frames that follows the
                       speech, which the mouth meter partly reads as an open mouth, reads as
                       nothing (higher)
audio_in_mouth         share of what the speech changes in the frames (|frames with the audio -
                       frames without it|, same seed, still head) that lies in each frame's
                       mouth box (``audio_share_in_box``): about 1 where the speech moves the
                       mouth only, about the box's share of the frame where it changes the whole
                       picture, as a tint or stripes do (higher)
lipsync_offset         the shift of the measured mouth (frames; > 0 = the video is late) at
                       which that r peaks, within +-max_lag (0 = in sync; SyncNet's offset)
view_error_deg         mean over frames of (|d yaw| + |d pitch|) / 2, measured head-relative
                       view vs requested camera (lower). Valid for a still head (motion 0):
                       a moving head adds its own pose to the view it shows
camera_follow          share of the requested view change the frames show: the least-squares
                       slope of measured on requested yaw and pitch over a clip's frames
                       (1 = follows, 0 = ignores the camera; NaN when the camera barely moves)
identity_distance      mean over frames of the RMS difference between the identity read from
                       a frame and the target identity, optionally per-dimension scaled (lower)
pose_diversity_deg     mean over yaw / pitch / roll of the std over time of the head pose
                       (higher = livelier; a reference-locked head scores ~0, i.e. the
                       meters' noise)
frechet_distance       Frechet distance of Gaussians fitted to two feature sets (lower)
continuity_ratio       mean frame-to-frame change across chunk boundaries / the same within
                       chunks (1.0 = seamless; > 1 = visible seams; NaN for a frozen video)
drift_ratio            quality of the last window / quality of the first (1.0 = no drift);
                       see ``window_quality`` for the per-window quality
=====================  =====================================================================
"""

from __future__ import annotations

import math

import torch

# which way each metric improves (lipsync_offset has a target, 0, not a direction)
LOWER_IS_BETTER = ("view_error_deg", "identity_distance", "identity_distance_model", "fidelity_fd", "continuity")
HIGHER_IS_BETTER = ("lipsync_r", "lipsync_r_no_tint", "audio_in_mouth", "drift_ratio", "pose_diversity_deg",
                    "camera_follow")

FLAT_STD = 1e-4  # a track whose std is below this is constant: its correlation is 0 by definition
SILENT_STD = 0.05  # a ground-truth mouth window below this std is (nearly) silent
STILL_CAMERA_DEG = 2.0  # camera_follow: a clip whose requested yaw and pitch vary less (std) is not scored


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two (T,) tracks; 0.0 when either is constant (undefined r)."""
    a, b = a.double().flatten(), b.double().flatten()
    assert a.shape == b.shape, f"tracks differ in length: {a.shape[0]} vs {b.shape[0]}"
    if a.numel() < 2 or a.std() < FLAT_STD or b.std() < FLAT_STD:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def lipsync_r(measured_opening: torch.Tensor, gt_opening: torch.Tensor) -> float:
    """(T,) measured mouth opening vs (T,) ground-truth opening from the audio -> Pearson r."""
    return pearson(measured_opening, gt_opening)


def hold_colour(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) frames with each frame's mean colour (per channel) replaced by the mean over
    all of them: what changes from frame to frame is then the picture, not a tint of all of it."""
    frame_mean = frames.mean(dim=(2, 3), keepdim=True)  # (T, 3, 1, 1)
    return frames - frame_mean + frame_mean.mean(dim=0, keepdim=True)


def audio_share_in_box(with_audio: torch.Tensor, without_audio: torch.Tensor, inside: torch.Tensor) -> float:
    """Share of the change between (T, 3, H, W) frames made with and without the audio that lies
    where `inside` (T, H, W), each frame's mouth box (`mouth_box.box_mask`), is true."""
    change = (with_audio.float() - without_audio.float()).abs().sum(dim=1)  # (T, H, W)
    return float((change * inside).sum() / change.sum().clamp(min=1e-12))


def lipsync_offset(measured_opening: torch.Tensor, gt_opening: torch.Tensor, max_lag: int = 4) -> int:
    """(T,) measured vs (T,) ground-truth opening -> the lag in frames (> 0: the measured mouth
    comes late) at which their Pearson r is highest, searched over -max_lag..max_lag."""
    n = min(len(measured_opening), len(gt_opening))
    max_lag = min(max_lag, n - 2)

    def r_at(lag: int) -> float:  # measured frame k + lag against ground-truth frame k
        if lag >= 0:
            return pearson(measured_opening[lag:n], gt_opening[: n - lag])
        return pearson(measured_opening[: n + lag], gt_opening[-lag:n])

    return max(range(-max_lag, max_lag + 1), key=lambda lag: (r_at(lag), -abs(lag)))


def shuffle_blocks(track: torch.Tensor, block: int, generator: torch.Generator) -> torch.Tensor:
    """A (T, ...) track cut into blocks of ``block`` frames, put back in random order ("shuffled
    audio": each piece is real speech, but at the wrong moment)."""
    parts = list(track.split(max(1, block)))
    order = torch.randperm(len(parts), generator=generator).tolist()
    return torch.cat([parts[i] for i in order])


def angle_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a - b wrapped to [-180, 180) degrees."""
    return torch.remainder(a - b + 180.0, 360.0) - 180.0


def view_error_deg(measured_view: torch.Tensor, requested_camera: torch.Tensor) -> float:
    """Mean absolute yaw/pitch error (degrees) of measured views (T, 3) vs the camera (T, 4 or 3)."""
    assert measured_view.shape[0] == requested_camera.shape[0], "one camera row per measured frame"
    err = angle_diff(measured_view[:, :2].double(), requested_camera[:, :2].double()).abs()  # (T, 2)
    return float(err.mean())


def camera_follow(measured_view: torch.Tensor, requested_view: torch.Tensor) -> float:
    """Slope of measured (T, 3) on requested (T, 3) views, yaw and pitch pooled, each centred on
    its clip mean: 1 when the frames turn as the camera does, 0 when they ignore it; NaN when the
    requested view hardly changes (std under STILL_CAMERA_DEG), where nothing can be told."""
    m, r = measured_view[:, :2].double(), requested_view[:, :2].double()  # (T, 2) yaw, pitch
    r = r - r.mean(dim=0)
    m = r + angle_diff(m - m.mean(dim=0), r)  # measured, unwrapped around the requested view
    if float(r.pow(2).mean(dim=0).sum().sqrt()) < STILL_CAMERA_DEG:
        return math.nan
    return float((m * r).sum() / r.pow(2).sum())


def identity_distance(measured: torch.Tensor, target: torch.Tensor, scale: torch.Tensor | None = None) -> float:
    """Mean over frames of the RMS of (measured (T, D) - target (D,)) / scale (D,)."""
    diff = measured.double() - target.double().view(1, -1)  # (T, D)
    if scale is not None:
        diff = diff / scale.double().clamp(min=1e-6).view(1, -1)
    return float(diff.pow(2).mean(dim=1).sqrt().mean())


def pose_diversity(head_pose: torch.Tensor) -> float:
    """Mean over the three angles of the std over time of a (T, 3) head pose, degrees."""
    if head_pose.shape[0] < 2:
        return 0.0
    return float(head_pose.double().std(dim=0).mean())


def _sqrtm_psd(mat: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(mat)
    return (vecs * vals.clamp(min=0.0).sqrt()) @ vecs.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to (N, F) and (M, F) features (N, M >= 2):

    |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a^1/2 C_b C_a^1/2)^1/2), in float64 with
    symmetric eigendecompositions (exact for PSD covariances, no complex sqrtm).
    """
    a, b = feats_a.double(), feats_b.double()
    assert a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1], "features must be (N, F) and (M, F)"
    assert a.shape[0] >= 2 and b.shape[0] >= 2, "need at least two samples per set"
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # (F, F)
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0.0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2.0 * cross
    return float(fd.clamp(min=0.0))


def frame_changes(frames: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) -> (T - 1,) mean absolute change from frame t to t + 1."""
    return (frames[1:].float() - frames[:-1].float()).abs().flatten(1).mean(1)


def continuity_ratio(frames: torch.Tensor, chunk: int, eps: float = 1e-6) -> float:
    """Mean change across chunk boundaries (frame k*chunk - 1 -> k*chunk) / mean change within chunks.

    1.0 means the seams are invisible. NaN (undefined) when there is nothing to compare: one
    chunk only, chunk 1, or a frozen video (no change within chunks, e.g. an untrained model).
    """
    assert chunk >= 1, "chunk must be >= 1"
    d = frame_changes(frames)  # (T - 1,): d[i] is the change into frame i + 1
    into = torch.arange(1, frames.shape[0])
    seam = into % chunk == 0
    if not bool(seam.any()) or bool(seam.all()) or float(d[~seam].mean()) < eps:
        return math.nan
    return float(d[seam].mean() / d[~seam].mean())


def window_factors(gen_feats: torch.Tensor, ref_feats: torch.Tensor, fd_scale: float,
                   measured_mouth: torch.Tensor, gt_mouth: torch.Tensor) -> tuple[float, float]:
    """(fidelity, sync) of one window of frames, each in (0, 1].

    fidelity = exp(-FD(gen, ref) / fd_scale): the Frechet distance of the window's features to
        the ground truth's features over the same window, in units of ``fd_scale`` (a reference
        distance for "clearly wrong frames", chosen by the caller).
    sync = max(lip-sync r of the window, 0.01), or 1.0 when the ground-truth mouth is (almost)
        still in the window (silence leaves r undefined).
    """
    fidelity = math.exp(-frechet_distance(gen_feats, ref_feats) / max(fd_scale, 1e-9))
    sync = 1.0 if float(gt_mouth.std()) < SILENT_STD else max(lipsync_r(measured_mouth, gt_mouth), 0.01)
    return fidelity, sync


def window_quality(gen_feats: torch.Tensor, ref_feats: torch.Tensor, fd_scale: float,
                   measured_mouth: torch.Tensor, gt_mouth: torch.Tensor) -> float:
    """Quality in (0, 1] of one window of frames: fidelity x sync (``window_factors``)."""
    fidelity, sync = window_factors(gen_feats, ref_feats, fd_scale, measured_mouth, gt_mouth)
    return fidelity * sync


def window_profile(gen_feats: torch.Tensor, ref_feats: torch.Tensor, noise_feats: torch.Tensor,
                   measured_mouth: torch.Tensor, gt_mouth: torch.Tensor, window: int) -> list[tuple[int, float, float]]:
    """(first frame, fidelity, sync) of each whole window of ``window`` frames (sized as
    ``drift_windows`` sizes them) from the clip's start: the two factors of the quality apart,
    over the whole clip, where the drift ratio compares only the first and the last window's
    product. Each window's fidelity is in units of the noise frames' distance there, as the
    drift ratio's is."""
    n = ref_feats.shape[0]
    w = drift_windows(n, window)[0].stop
    rows = []
    for a in range(0, n - w + 1, w):
        s = slice(a, a + w)
        scale = frechet_distance(noise_feats[s], ref_feats[s])
        rows.append((a, *window_factors(gen_feats[s], ref_feats[s], scale, measured_mouth[s], gt_mouth[s])))
    return rows


def drift_ratio(early_quality: float, late_quality: float) -> float:
    """Late / early quality (both in (0, 1]); 1.0 = the end is as good as the start."""
    return float(late_quality / max(early_quality, 1e-9))


def drift_windows(n_frames: int, window: int) -> tuple[slice, slice]:
    """The first and last ``window`` frames (each at most a third of the clip, at least 2 frames)."""
    w = max(2, min(window, n_frames // 3))
    return slice(0, w), slice(n_frames - w, n_frames)
