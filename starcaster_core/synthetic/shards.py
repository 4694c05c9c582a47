"""Synthetic datasets on disk: safetensors shards + a JSON index, and a torch ``Dataset`` reader.

Layout of ``out_dir``::

    index.json                 format, version, kind, seed, fps, size, sample_rate, shards [...]
    shard-00000.safetensors    per sample i (key prefix "000123/"):
                                 frames uint8 (T, 3, H, W), audio int16 (S,) PCM,
                                 mouth / mouth_width / blink float32 (T,), pose (T, 3),
                                 camera (T, 4), identity (IDENTITY_DIM,), mouth_box (T, 4),
                                 portrait uint8 (3, H, W): the identity neutral and frontal

Every sequence is a function of (seed, sequence index) only: sequence i draws its identity from
sub-seed (seed, identity index), where the identity index is i, or i mod n_identities when
identities are shared, its speech and motion from further sub-seeds. Talking sequences use a
frontal camera half the time and otherwise a random fixed view (yaw +-35, pitch +-10 degrees).
With ``audio="auto"`` the speech source depends on whether espeak-ng is installed; pass
``audio="formant"`` for data that is identical on every machine.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from .identity import IDENTITY_DIM, IdentityParams
from .render import render_portrait
from .sequences import orbit_sequence, talking_sequence
from .speech import SAMPLE_RATE, SpeechSource, speech_audio

logger = logging.getLogger(__name__)

FORMAT = "starcaster-synthetic"
FORMAT_VERSION = 1
Kind = Literal["talking", "orbit"]
KINDS: tuple[str, ...] = ("talking", "orbit")
_FLOAT_KEYS = ("mouth", "mouth_width", "blink", "pose", "camera", "identity")


def sub_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed derived from ``seed`` and integer keys."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def make_sequence(kind: Kind, index: int, seed: int, frames_per_seq: int, size: int, fps: float,
                  n_identities: int | None = None, audio: SpeechSource = "auto") -> dict:
    """Sequence ``index`` of a dataset (see the module docstring for how it is seeded)."""
    id_index = index % n_identities if n_identities else index
    identity = IdentityParams.sample(torch.Generator().manual_seed(sub_seed(seed, id_index, 0)))
    gen = torch.Generator().manual_seed(sub_seed(seed, index, 1))
    if kind == "orbit":
        seq = orbit_sequence(identity, frames_per_seq, gen, size=size, fps=fps)
    else:
        n_samples = int(frames_per_seq * SAMPLE_RATE // fps)  # ceil(n * fps / sr) == frames
        wave, sr = speech_audio(n_samples / SAMPLE_RATE, sub_seed(seed, index, 2) % 2**31, audio)
        u = torch.rand(4, generator=gen)
        camera = None
        if u[0] >= 0.5:
            camera = torch.tensor([70 * (float(u[1]) - 0.5), 20 * (float(u[2]) - 0.5), 0.0,
                                   0.9 + 0.25 * float(u[3])])
        seq = talking_sequence(identity, (wave, sr), fps, camera, gen, size=size)
    assert seq["frames"].shape[0] == frames_per_seq, "sequence length mismatch"
    seq["identity_index"] = id_index
    seq["portrait"] = render_portrait(identity, size=size).permute(2, 0, 1).contiguous()  # (3, H, W): as eval draws it
    return seq


def _encode(seq: dict, prefix: str) -> dict[str, torch.Tensor]:
    out = {f"{prefix}{key}": (seq[key] * 255.0).round().clamp(0, 255).to(torch.uint8)
           for key in ("frames", "portrait")}  # images in 0..1 -> uint8
    out[f"{prefix}audio"] = (seq["audio"].clamp(-1, 1) * 32767.0).round().to(torch.int16)
    for key in (*_FLOAT_KEYS, "mouth_box"):
        out[f"{prefix}{key}"] = seq[key].float().contiguous()
    return out


def _write_shard(out: Path, s: int, ids: range, kind: Kind, seed: int, frames_per_seq: int, size: int,
                 fps: float, n_identities: int | None, audio: SpeechSource) -> dict:
    """Write shard number ``s`` holding sequences ``ids``; returns its index entry."""
    tensors, id_indices = {}, []
    for i in ids:
        seq = make_sequence(kind, i, seed, frames_per_seq, size, fps, n_identities, audio)
        tensors.update(_encode(seq, f"{i:06d}/"))
        id_indices.append(seq["identity_index"])
    path = out / f"shard-{s:05d}.safetensors"
    meta = {"format": FORMAT, "version": str(FORMAT_VERSION), "samples": json.dumps(list(ids))}
    save_file(tensors, str(path), metadata=meta)
    logger.info("wrote %s (%d sequences)", path, len(ids))
    return {"file": path.name, "samples": list(ids), "identity_index": id_indices}


def write_shards(out_dir: str | Path, n_sequences: int, kind: Kind = "talking", seed: int = 0,
                 frames_per_seq: int = 50, size: int = 64, fps: float = 25.0, shard_size: int = 64,
                 *, n_identities: int | None = None, audio: SpeechSource = "auto", workers: int = 1) -> list[Path]:
    """Generate ``n_sequences`` sequences into ``out_dir`` with ``workers`` processes (the data
    does not depend on it); returns the shard paths."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if n_sequences < 1 or frames_per_seq < 1 or shard_size < 1 or size < 8 or fps <= 0 or workers < 1:
        raise ValueError("n_sequences, frames_per_seq, shard_size, workers must be >= 1, size >= 8, fps > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out, s, range(s * shard_size, min(n_sequences, (s + 1) * shard_size)), kind, seed, frames_per_seq,
             size, fps, n_identities, audio) for s in range(math.ceil(n_sequences / shard_size))]
    if workers == 1:
        index_shards = [_write_shard(*job) for job in jobs]
    else:
        # one shard per process at a time, one thread each: the processes share the cores
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            index_shards = list(pool.map(_write_shard, *zip(*jobs, strict=True)))
    index = {
        "format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "seed": seed,
        "n_sequences": n_sequences, "frames_per_seq": frames_per_seq, "size": size, "fps": fps,
        "sample_rate": SAMPLE_RATE, "identity_dim": IDENTITY_DIM, "n_identities": n_identities,
        "audio": audio if kind == "talking" else None, "shards": index_shards,
    }
    (out / "index.json").write_text(json.dumps(index, indent=2))
    return [out / entry["file"] for entry in index_shards]


class ShardDataset(Dataset):
    """Reads a ``write_shards`` directory. Items are dicts with frames (T, 3, H, W) float 0..1
    (uint8 if ``float_frames=False``), audio float32 (S,), the per-frame tracks, identity,
    identity_index, sample_rate, fps and, when the shard has one, portrait (3, H, W) like the frames."""

    def __init__(self, root: str | Path, *, float_frames: bool = True) -> None:
        self.root = Path(root)
        index_path = self.root / "index.json"
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path} not found: not a synthetic shard directory")
        self.index = json.loads(index_path.read_text())
        if self.index.get("format") != FORMAT or self.index.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported shard format {self.index.get('format')!r} "
                             f"v{self.index.get('version')} (expected {FORMAT} v{FORMAT_VERSION})")
        self.float_frames = float_frames
        self.items = [(sh["file"], sample, id_idx) for sh in self.index["shards"]
                      for sample, id_idx in zip(sh["samples"], sh["identity_index"], strict=True)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        file, sample, id_index = self.items[i]
        prefix = f"{sample:06d}/"
        with safe_open(str(self.root / file), framework="pt") as f:
            item = {key: f.get_tensor(prefix + key) for key in _FLOAT_KEYS}
            item["audio"] = f.get_tensor(prefix + "audio").float() / 32767.0
            if prefix + "mouth_box" in f.keys():  # shards written before session 13 have none
                item["mouth_box"] = f.get_tensor(prefix + "mouth_box")
            # images; shards written before session 9 have no portrait
            images = [key for key in ("frames", "portrait") if prefix + key in f.keys()]
            for key in images:
                image = f.get_tensor(prefix + key)
                item[key] = image.float() / 255.0 if self.float_frames else image
        item.update(identity_index=id_index, sample_rate=self.index["sample_rate"],
                    fps=self.index["fps"], kind=self.index["kind"])
        return item
