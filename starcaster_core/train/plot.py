"""A PNG of the training curves from log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

VALIDATION = ("val_lipsync_r", "val_lipsync_r_no_tint", "val_audio_in_mouth", "val_view_error_deg",  # train.validate
              "val_fidelity_fd", "val_drift_ratio")


def plot_log(log_path: str | Path, png_path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    keys = [k for k in ("loss", "flow", "lip", "encoder", "mouth", "pose") if any(k in r for r in rows)]
    keys += [k for k in VALIDATION if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*pts), lw=1)
        ax.set_yscale("linear" if key in VALIDATION else "log")
        ax.set_title(key)
        ax.set_xlabel("step")
        for r in rows:  # mark where a stage begins
            if rows.index(r) and r["stage"] != rows[rows.index(r) - 1]["stage"]:
                ax.axvline(r["step"], color="gray", lw=0.5, ls="--")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
