"""Render a camera trajectory as a small chart image (the trajectory node's preview output).

matplotlib is imported inside the function (Agg canvas, no pyplot global state), so importing
``starcaster_core.camera`` costs nothing and works without matplotlib.
"""

from __future__ import annotations

import torch

_ANGLE_STYLE = (("yaw", "#d62728"), ("pitch", "#2ca02c"), ("roll", "#1f77b4"))
_DISTANCE_COLOR = "#7f3fbf"


def plot_trajectory(traj: torch.Tensor, width: int = 512, height: int = 256) -> torch.Tensor:
    """Plot yaw, pitch, roll (deg, top) and distance (bottom) over frames -> (H, W, 3) float in [0, 1].

    traj: (T, 4) = (yaw, pitch, roll, distance) per frame, T >= 1.
    """
    if not isinstance(traj, torch.Tensor) or traj.ndim != 2 or traj.shape[-1] != 4 or traj.shape[0] < 1:
        shape = tuple(traj.shape) if isinstance(traj, torch.Tensor) else type(traj).__name__
        raise ValueError(f"plot_trajectory expects a (T, 4) trajectory, got {shape}")
    if width < 64 or height < 64:
        raise ValueError(f"plot size must be at least 64x64 pixels, got {width}x{height}")
    import numpy as np

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as err:
        raise ImportError("plot_trajectory needs matplotlib: pip install matplotlib") from err

    data = traj.detach().to("cpu", torch.float64).numpy()  # (T, 4)
    frames = range(data.shape[0])
    marker = "o" if data.shape[0] < 3 else None  # a 1-2 frame trajectory still shows up
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax_angle, ax_dist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (2, 1)})
    for col, (name, color) in enumerate(_ANGLE_STYLE):
        ax_angle.plot(frames, data[:, col], color=color, marker=marker, linewidth=1.5, label=name)
    ax_angle.set_ylabel("deg", fontsize=7)
    ax_angle.legend(loc="upper left", fontsize=6, ncol=3, frameon=False)
    ax_dist.plot(frames, data[:, 3], color=_DISTANCE_COLOR, marker=marker, linewidth=1.5)
    ax_dist.set_ylabel("dist", fontsize=7)
    ax_dist.set_xlabel("frame", fontsize=7)
    ax_dist.xaxis.set_major_locator(MaxNLocator(integer=True))
    if data.shape[0] == 1:
        ax_dist.set_xlim(-1, 1)
    for ax in (ax_angle, ax_dist):
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=6)
    fig.tight_layout(pad=0.4)
    canvas.draw()

    rgba = torch.from_numpy(np.asarray(canvas.buffer_rgba()).copy())  # (h, w, 4) uint8
    image = rgba[..., :3].float() / 255.0  # (h, w, 3)
    if image.shape[:2] != (height, width):  # rounding of inches * dpi; resize to the exact size asked for
        image = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=(height, width),
                                                mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    return image.clamp(0.0, 1.0).contiguous()  # (H, W, 3)
