"""An MP4 written frame by frame while the video is generated: memory holds one chunk, not the
whole video (ComfyUI's IMAGE output must hold every frame at once; at 512x512 a minute of video
is ~4.7 GB of float frames). H.264 video and AAC audio through PyAV, which ComfyUI itself uses.
"""

from __future__ import annotations

from fractions import Fraction

import av
import torch


class StreamingVideoWriter:
    """with StreamingVideoWriter(path, fps, width, height, audio) as out: out.write(frames)

    frames: (K, H, W, 3) floats in 0..1 (ComfyUI IMAGE layout); audio: ComfyUI AUDIO or None
    (mono and stereo are kept; three or more channels are mixed down to mono).
    The audio is muxed when the file is closed; its length must match the video's (checked by
    the caller, which knows the features it was computed from)."""

    def __init__(self, path: str, fps: float, width: int, height: int, audio: dict | None) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}; resize the frames first")
        self.container = av.open(path, mode="w")
        self.video = self.container.add_stream("h264", rate=Fraction(fps).limit_denominator(1001))
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.audio, self.audio_stream = audio, None
        if audio is not None:  # every stream must exist before the first packet is written
            layout = "stereo" if audio["waveform"].shape[1] == 2 else "mono"  # more channels: mixed to mono
            self.audio_stream = self.container.add_stream("aac", rate=int(audio["sample_rate"]), layout=layout)

    def write(self, frames: torch.Tensor) -> None:
        pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # (K, H, W, 3)
        for image in pixels:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            self.container.mux(self.video.encode(frame))

    def _write_audio(self) -> None:
        stream = self.audio_stream
        wave = self.audio["waveform"][0].float()  # (C, S) of the first (only) clip
        if stream.layout.name == "mono":
            wave = wave.mean(dim=0, keepdim=True)  # (1, S): 3+ channels are mixed down, as the features were
        frame = av.AudioFrame.from_ndarray(wave.contiguous().numpy(), format="fltp", layout=stream.layout.name)
        frame.sample_rate, frame.pts = stream.rate, 0
        self.container.mux(stream.encode(frame))
        self.container.mux(stream.encode(None))

    def __enter__(self) -> StreamingVideoWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self.container.mux(self.video.encode(None))  # flush the encoder's delayed frames
                if self.audio_stream is not None:
                    self._write_audio()
        finally:
            self.container.close()
