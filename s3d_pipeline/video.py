"""Video in and out through the ffmpeg binary that imageio-ffmpeg ships (no system ffmpeg needed).

Writing: :class:`VideoWriter` streams raw RGB frames into an H.264 (yuv420p) encoder chunk by chunk, so a
generator of frames is written with flat memory; at close the speech is muxed in as AAC together with the
metadata tags, and the finished mp4 replaces the target path in one ``os.replace``. Until then everything
lives in hidden temporary files next to the target, which are removed if anything fails: a reader never sees
a half-written video. :func:`export_to_video` writes a whole :class:`~s3d_pipeline.S3DNeRFPipelineOutput`.

Reading: :func:`iter_video` / :func:`read_video` decode frames (optionally resampled to a frame rate), and
:func:`extract_audio` decodes the sound track of any container ffmpeg reads (mp4, m4a, webm, ...) to mono
float32, which librosa cannot do for m4a/webm.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import imageio_ffmpeg
import numpy as np
import PIL.Image
import soundfile as sf

from .errors import InvalidAudioError, InvalidVideoError

logger = logging.getLogger(__name__)

FramesChunk = Union[np.ndarray, Sequence[PIL.Image.Image], PIL.Image.Image]

EXPORT_CHUNK = 8  # frames converted and encoded together by export_to_video

# Tags the mp4 muxer stores in its standard (iTunes-style) atoms; any other key needs the muxer's
# ``use_metadata_tags`` flag, which stores free-form keys that fewer players display.
_STANDARD_MP4_TAGS = {"title", "comment", "artist", "album", "date", "description", "copyright", "genre", "composer"}


def _ffmpeg() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _frames_to_uint8(chunk: FramesChunk) -> np.ndarray:
    """A frame or a chunk of frames (uint8 or floats in [0, 1], arrays or PIL images) -> (N, H, W, 3) uint8."""
    if isinstance(chunk, PIL.Image.Image):
        chunk = [chunk]
    if isinstance(chunk, (list, tuple)):
        chunk = np.stack([np.asarray(im.convert("RGB") if isinstance(im, PIL.Image.Image) else im) for im in chunk])
    frames = np.asarray(chunk)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3) or (H, W, 3) RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return frames


class VideoWriter:
    """Stream frames into an H.264 + AAC mp4, written atomically.

    Args:
        path: the mp4 to write (its folder is created if needed).
        fps: frames per second.
        audio: optional mono waveform (float, any length); muxed at close, trimmed or zero-padded to the
            video's duration so the two streams end together.
        sample_rate: sample rate of ``audio``.
        metadata: mp4 tags, e.g. ``{"comment": "AI-generated"}``.
        crf: H.264 constant rate factor (lower = better quality, 18 is visually near-lossless).
        preset: x264 speed/size trade-off.

    Frame size is taken from the first chunk; odd widths or heights are padded by one replicated edge pixel
    because yuv420p needs even dimensions.

    Examples:
        >>> with VideoWriter("out.mp4", fps=25, audio=wave, sample_rate=16000) as writer:  # doctest: +SKIP
        ...     for chunk in frame_chunks:  # each (n, H, W, 3) uint8
        ...         writer.write(chunk)
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        fps: float,
        audio: Optional[np.ndarray] = None,
        sample_rate: int = 16000,
        metadata: Optional[Mapping[str, str]] = None,
        *,
        crf: int = 18,
        preset: str = "medium",
    ):
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.audio = None if audio is None else np.asarray(audio, dtype=np.float32).reshape(-1)
        self.sample_rate = int(sample_rate)
        self.metadata = dict(metadata or {})
        self.crf = int(crf)
        self.preset = preset
        self.num_frames = 0
        self.size: Optional[Tuple[int, int]] = None  # (H, W) of the frames as given
        self._process: Optional[subprocess.Popen] = None
        self._stderr = None
        self._temp_paths: List[Path] = []
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)

    # -- temporary files -------------------------------------------------------------------------------
    def _temp_path(self, suffix: str) -> Path:
        """A hidden temporary file next to the target (same file system, so os.replace is atomic)."""
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=suffix, dir=self.path.parent)
        os.close(fd)
        self._temp_paths.append(Path(name))
        return Path(name)

    def _remove_temp_files(self) -> None:
        for p in self._temp_paths:
            p.unlink(missing_ok=True)
        self._temp_paths.clear()

    # -- encoding --------------------------------------------------------------------------------------
    def _start_encoder(self, height: int, width: int) -> None:
        self._video_path = self._temp_path(".video.mp4")
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall ffmpeg
        rate = Fraction(self.fps).limit_denominator(1001)
        cmd = [
            _ffmpeg(), "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(rate), "-i", "-",
            "-an", "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
            str(self._video_path),
        ]  # fmt: skip
        self._process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def _ffmpeg_log(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def write(self, frames: FramesChunk) -> None:
        """Append a frame (H, W, 3) or a chunk (N, H, W, 3) (uint8, floats in [0, 1], or PIL images)."""
        if self._closed:
            raise ValueError(f"VideoWriter for {self.path} is already closed")
        frames = _frames_to_uint8(frames)  # (N, H, W, 3)
        if self.size is None:
            self.size = frames.shape[1:3]
            self._start_encoder(frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2)
        elif frames.shape[1:3] != self.size:
            raise ValueError(f"all frames must be {self.size[0]}x{self.size[1]}, got {frames.shape[1]}x{frames.shape[2]}")
        h, w = self.size
        if h % 2 or w % 2:
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            self._process.stdin.write(np.ascontiguousarray(frames).data)  # the array's own buffer: no bytes copy
        except BrokenPipeError as exc:
            raise RuntimeError(f"ffmpeg stopped while encoding {self.path}: {self._ffmpeg_log()}") from exc
        self.num_frames += len(frames)

    def _finish_encoder(self) -> None:
        self._process.stdin.close()
        if self._process.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to encode {self.path}: {self._ffmpeg_log()}")

    def _mux(self) -> Path:
        """Video stream + AAC speech + tags -> a finished temporary mp4 (video is copied, not re-encoded)."""
        cmd = [_ffmpeg(), "-y", "-loglevel", "error", "-i", str(self._video_path)]
        if self.audio is not None:
            duration = self.num_frames / self.fps
            wav_path = self._temp_path(".wav")
            sf.write(wav_path, self._audio_for_duration(duration), self.sample_rate, subtype="FLOAT")
            cmd += ["-i", str(wav_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
        cmd += ["-c:v", "copy", "-movflags", "+faststart" + self._metadata_flag()]
        for key, value in self.metadata.items():
            cmd += ["-metadata", f"{key}={value}"]
        final_path = self._temp_path(".mp4")
        cmd += ["-f", "mp4", str(final_path)]
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to mux {self.path}: {result.stderr.decode(errors='replace').strip()}")
        return final_path

    def _metadata_flag(self) -> str:
        return "+use_metadata_tags" if set(self.metadata) - _STANDARD_MP4_TAGS else ""

    def _audio_for_duration(self, duration: float) -> np.ndarray:
        """The speech trimmed or zero-padded to ``duration`` seconds, so audio and video end together."""
        target = int(round(duration * self.sample_rate))
        if abs(len(self.audio) - target) > self.sample_rate / self.fps:
            logger.warning(
                "audio lasts %.2f s but the video %.2f s; the audio is %s to match",
                len(self.audio) / self.sample_rate, duration, "trimmed" if len(self.audio) > target else "padded with silence",
            )  # fmt: skip
        out = np.zeros(target, dtype=np.float32)
        out[: min(target, len(self.audio))] = self.audio[:target]
        return out

    # -- closing ---------------------------------------------------------------------------------------
    def close(self) -> Path:
        """Finish encoding, mux the audio and move the mp4 into place; returns its path."""
        if self._closed:
            return self.path
        try:
            if self.num_frames == 0:
                raise ValueError(f"no frames were written to {self.path}")
            self._finish_encoder()
            os.replace(self._mux(), self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._release()
        return self.path

    def abort(self) -> None:
        """Stop encoding and remove every temporary file; the target path is left untouched."""
        self._closed = True
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._release()

    def _release(self) -> None:
        if self._process is not None and self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._remove_temp_files()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def export_to_video(output, path: Union[str, os.PathLike], *, crf: int = 18, metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Write a pipeline output (frames, fps, audio, sample_rate) as an H.264 + AAC mp4 with the speech.

    Args:
        output: an :class:`~s3d_pipeline.S3DNeRFPipelineOutput` or anything with ``frames`` ((N, H, W, 3)
            uint8, floats in [0, 1], a list of PIL images, or (N, 3, H, W) torch floats), ``fps``, and
            optionally ``audio`` (mono float32) and ``sample_rate``.
        path: target mp4, replaced atomically.
        crf: H.264 quality (lower is better).
        metadata: mp4 tags, e.g. ``{"comment": "AI-generated"}``.

    Returns:
        The path written.

    Frames are converted and handed to the encoder ``EXPORT_CHUNK`` at a time, so floats or PIL images cost one
    chunk's uint8 copy, not the whole video's. To write a video without holding its frames at all, use
    :meth:`S3DNeRFPipeline.export <s3d_pipeline.S3DNeRFPipeline.export>`.

    Examples:
        >>> out = pipe("portrait.png", "speech.wav")  # doctest: +SKIP
        >>> export_to_video(out, "talking.mp4", metadata={"comment": "AI-generated"})  # doctest: +SKIP
    """
    frames = output.frames
    if hasattr(frames, "permute"):  # torch (N, 3, H, W) in [0, 1], output_type="pt": a view, converted per chunk
        frames = frames.detach().cpu().permute(0, 2, 3, 1)
    elif isinstance(frames, PIL.Image.Image) or (isinstance(frames, np.ndarray) and frames.ndim == 3):
        frames = [frames]  # one frame
    audio = getattr(output, "audio", None)
    with VideoWriter(path, output.fps, audio=audio, sample_rate=getattr(output, "sample_rate", 16000), metadata=metadata, crf=crf) as writer:
        for start in range(0, len(frames), EXPORT_CHUNK):
            chunk = frames[start : start + EXPORT_CHUNK]
            writer.write(chunk.float().numpy() if hasattr(chunk, "numpy") else chunk)
    return Path(path)


@dataclass
class VideoInfo:
    """What the decoder reports about a video stream."""

    fps: float  # frame rate of the frames yielded (the source's unless resampled)
    size: Tuple[int, int]  # (H, W) of the frames yielded
    duration: float  # seconds, 0 when unknown


def iter_video(path: Union[str, os.PathLike], *, fps: Optional[float] = None) -> Tuple[VideoInfo, Iterator[np.ndarray]]:
    """Decode a video lazily: returns its info and an iterator of (H, W, 3) uint8 RGB frames.

    Args:
        path: any video ffmpeg reads.
        fps: resample to this frame rate (frames dropped or repeated by ffmpeg), or keep the source's.

    Raises:
        InvalidVideoError: the file is missing or holds no decodable video stream.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidVideoError(f"video {path!r} does not exist")
    output_params = ["-vf", f"fps={Fraction(fps).limit_denominator(1001)}"] if fps else []
    reader = imageio_ffmpeg.read_frames(path, output_params=output_params)
    try:
        meta = next(reader)
    except (IOError, RuntimeError, StopIteration) as exc:
        reader.close()
        last_line = ([line for line in str(exc).splitlines() if line.strip()] or ["no video stream"])[-1]
        raise InvalidVideoError(f"could not decode a video stream from {path!r} ({last_line.strip()})") from exc
    width, height = meta["size"]
    info = VideoInfo(fps=float(fps or meta["fps"]), size=(height, width), duration=float(meta.get("duration") or 0.0))

    def frames() -> Iterator[np.ndarray]:
        try:
            for buffer in reader:
                yield np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)
        finally:
            reader.close()

    return info, frames()


def read_video(path: Union[str, os.PathLike], *, fps: Optional[float] = None) -> Tuple[np.ndarray, float]:
    """Decode a whole video: returns frames (N, H, W, 3) uint8 RGB and the frame rate."""
    info, frames = iter_video(path, fps=fps)
    stack = list(frames)
    if not stack:
        raise InvalidVideoError(f"{os.fspath(path)!r} holds no video frames")
    return np.stack(stack), info.fps


def extract_audio(path: Union[str, os.PathLike], sample_rate: int = 16000) -> np.ndarray:
    """Decode the first sound track of any media file ffmpeg reads to mono float32 at ``sample_rate``: (S,).

    Raises:
        InvalidAudioError: the file is missing, has no sound track, or it is empty.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidAudioError(f"audio file {path!r} does not exist")
    # "file:" + an absolute path: ffmpeg would read "take:1.m4a" as protocol "take" and "concat:..." as a recipe.
    source = "file:" + os.path.abspath(path)
    cmd = [_ffmpeg(), "-nostdin", "-loglevel", "error", "-i", source, "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(int(sample_rate)), "-f", "f32le", "-"]
    result = subprocess.run(cmd, capture_output=True)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise InvalidAudioError(
            f"could not decode a sound track from {path!r} ({detail[-1] if detail else 'ffmpeg failed'}); "
            "use a WAV, MP3, M4A, OGG or a video with sound"
        )
    audio = np.frombuffer(result.stdout, dtype=np.float32).copy()
    if audio.size == 0:
        raise InvalidAudioError(f"the sound track of {path!r} is empty")
    return audio
