"""Write every Nth frame of a video side by side into one PNG (the README's frame strips).

    python tools/frame_strip.py out/orbit.mp4 docs/img/demo_frames_orbit.png --every 2 --count 20 --scale 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--every", type=int, default=2, help="keep every Nth frame")
    p.add_argument("--count", type=int, default=20, help="frames in the strip")
    p.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscale factor")
    args = p.parse_args()
    video = cv2.VideoCapture(str(args.video))
    frames, index = [], 0
    while len(frames) < args.count:
        ok, frame = video.read()
        if not ok:
            break
        if index % args.every == 0:
            frames.append(frame)
        index += 1
    if not frames:
        raise SystemExit(f"{args.video}: no frames could be read")
    strip = np.concatenate(frames, axis=1)  # (H, count * W, 3) BGR
    strip = cv2.resize(strip, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), strip)
    print(f"wrote {args.out}: {len(frames)} frames")


if __name__ == "__main__":
    main()
