"""The typed key/value cache of clean context frames, owned and passed in by the caller."""

from __future__ import annotations

import torch


class KVCache:
    """Per-block keys/values of the clean frames before the chunk being generated.

    Filled by one t=0 pass after each chunk (`append` per block, then `commit`), trimmed to a
    rolling window of `window` frames so memory stays flat in video length. Identity "sink"
    tokens are not stored here: every forward makes them from the identity embedding, so they
    are never evicted.
    """

    def __init__(self, depth: int, tokens_per_frame: int, window: int | None) -> None:
        assert window is None or window >= 0, f"window must be >= 0 frames, got {window}"
        self.depth = depth
        self.tokens_per_frame = tokens_per_frame
        self.window = window
        self.reset()

    def reset(self) -> None:
        self.keys: list[torch.Tensor | None] = [None] * self.depth  # each (B, H, L, Dh)
        self.values: list[torch.Tensor | None] = [None] * self.depth
        self.frames = torch.zeros(0, dtype=torch.long)  # (L / tokens_per_frame,) frame indices
        self._pending: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * self.depth
        self.last_pixels: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # frame -> (B, C, 1, H, W), (B, 1)

    def __len__(self) -> int:
        """Number of cached frames."""
        return int(self.frames.numel())

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        k, v = self.keys[i], self.values[i]
        return None if k is None else (k, v)

    def token_frames(self, device: torch.device) -> torch.Tensor:
        """Frame index of every cached token: (L,)."""
        return self.frames.to(device).repeat_interleave(self.tokens_per_frame)

    def append(self, i: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Stage block i's keys/values of new frames; they become visible at `commit`."""
        self._pending[i] = (k, v)

    def frame_before(self, start: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Pixels and level of frame start - 1 if a write ended with it (else None): what a
        `previous_frame` model reads for the chunk starting at `start`."""
        return self.last_pixels.get(start - 1)

    def commit(self, frames: torch.Tensor, last: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Add the staged frames (global indices `frames`) and trim to the rolling window; `last`
        is the pixels and level of the last of them (for `frame_before`)."""
        if last is not None:
            self.last_pixels[int(frames[-1])] = last
        assert all(p is not None for p in self._pending), "commit() before every block appended"
        for i, (k, v) in enumerate(self._pending):
            old = self.layer(i)
            self.keys[i] = k if old is None else torch.cat([old[0], k], dim=2)
            self.values[i] = v if old is None else torch.cat([old[1], v], dim=2)
        self._pending = [None] * self.depth
        self.frames = torch.cat([self.frames, frames.cpu().long()])
        if self.window is not None and len(self) > self.window:
            self.rollback_front(len(self) - self.window)

    def rollback_front(self, n: int) -> None:
        """Evict the n oldest frames (the rolling window)."""
        keep = (len(self) - n) * self.tokens_per_frame
        for i in range(self.depth):
            # clone so the evicted part of the old buffer is freed
            self.keys[i] = self.keys[i][:, :, self.keys[i].shape[2] - keep :].clone()
            self.values[i] = self.values[i][:, :, self.values[i].shape[2] - keep :].clone()
        self.frames = self.frames[n:]
        oldest = int(self.frames[0]) if len(self) else None  # keep the frame before the oldest cached one
        self.last_pixels = {f: v for f, v in self.last_pixels.items() if oldest is not None and f >= oldest - 1}

    def rollback(self, n: int) -> None:
        """Drop the n newest frames (e.g. to regenerate the last chunk)."""
        assert 0 <= n <= len(self), f"cannot roll back {n} of {len(self)} cached frames"
        keep = (len(self) - n) * self.tokens_per_frame
        for i in range(self.depth):
            if self.keys[i] is not None:
                self.keys[i] = self.keys[i][:, :, :keep]
                self.values[i] = self.values[i][:, :, :keep]
        self.frames = self.frames[: len(self) - n]
        newest = int(self.frames[-1]) if len(self) else -1
        self.last_pixels = {f: v for f, v in self.last_pixels.items() if f <= newest}
