"""S3DNeRFPipeline: one portrait + speech -> a talking-head video, in 3D, single-shot."""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline

from .audio import SAMPLE_RATE, AudioInput, load_audio, num_video_frames
from .engines import FastEngine, FrameBatch, Identity, ReferenceEngine, encode_identity
from .errors import InvalidAudioError, InvalidPoseError, OutputTooLargeError
from .face import MAX_OUTPUT_SIDE, ImageInput, PreparedPortrait, fit_output, paste_back, prepare_portrait
from .frames import to_uint8
from .models import (
    AudioEncoder,
    CrossModalDeformationField,
    HierarchicalAppearanceEncoder,
    LipSyncDiscriminator,
    SuperResolution,
    TriPlaneRenderer,
)
from .models.lip_sync import SyncScore
from .pipeline_output import S3DNeRFPipelineOutput
from .rendering.cameras import pose_to_cam2world
from .video import VideoWriter

PoseInput = Union[float, Sequence[float], np.ndarray, torch.Tensor]

# Pose ranges the model is trained for (degrees): the synthetic corpus covers these.
POSE_LIMITS = {"yaw": 30.0, "pitch": 20.0, "roll": 15.0}
MAX_AUDIO_SECONDS = 600.0
# What __call__ may hold in the frames it returns: this share of the memory available when it is called.
OUTPUT_MEMORY_SHARE = 0.5
_BYTES_PER_PIXEL = {"np": 3, "pil": 4, "pt": 12}  # uint8 RGB; PIL keeps RGB in 4 bytes; float32 RGB

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from s3d_pipeline import S3DNeRFPipeline, export_to_video

        >>> pipe = S3DNeRFPipeline.from_pretrained("checkpoints/s3d-nerf-demo")
        >>> out = pipe("assets/portrait.png", "assets/speech.wav", yaw=10)
        >>> out.frames.shape, out.sync_confidence
        >>> export_to_video(out, "talking.mp4")
        ```
"""


def available_memory() -> int:
    """Bytes that new allocations can take now: Linux's MemAvailable (free memory plus reclaimable cache), else the
    free physical pages; ``sys.maxsize`` where neither is known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return sys.maxsize


class StreamingSyncScore:
    """The lip-sync score of a video that arrives chunk by chunk, holding only what the score needs.

    Each chunk's aligned frames are cut to the discriminator's lower-face crops at once, and every window of T
    consecutive crops is embedded as soon as it is complete: only the last T - 1 crops and one embedding (D floats)
    per window are kept, never the frames. :meth:`score` matches the embeddings against the speech as
    :meth:`~s3d_pipeline.models.lip_sync.LipSyncDiscriminator.score` does for a whole video (the same numbers up to
    float rounding, as windows are embedded in other batches).

    Args:
        lip_sync: the pipeline's :class:`~s3d_pipeline.models.lip_sync.LipSyncDiscriminator`.
        batch_size: windows embedded together.
    """

    def __init__(self, lip_sync: LipSyncDiscriminator, batch_size: int = 64):
        self.lip_sync = lip_sync
        self.batch_size = batch_size
        self._tail: Optional[torch.Tensor] = None  # (< T, 3, h, w) the crops that open the next windows
        self._embeddings: List[torch.Tensor] = []  # (windows, D) per chunk

    @torch.no_grad()
    def add(self, frames: torch.Tensor) -> None:
        """The video's next aligned frames, (n, 3, R, R) in [0, 1]."""
        crops = self.lip_sync.crop_lower_face(frames.float().to(self.lip_sync.device))  # (n, 3, h, w)
        if self._tail is not None:
            crops = torch.cat([self._tail, crops])
        t = self.lip_sync.config.num_frames
        if crops.shape[0] >= t:
            windows = self.lip_sync.frame_windows(crops)  # (n' - T + 1, T, 3, h, w)
            self._embeddings += [self.lip_sync.embed_video(w) for w in windows.split(self.batch_size)]
        self._tail = crops[max(0, crops.shape[0] - t + 1) :].clone()  # a copy: the chunk's crops are freed

    @torch.no_grad()
    def score(self, waveform: np.ndarray, fps: float, max_offset: int = 15) -> Optional[SyncScore]:
        """Confidence and AV offset against the speech (S,) 16 kHz; None when fewer than T frames were added."""
        if not self._embeddings:
            return None
        return self.lip_sync.score_embeddings(torch.cat(self._embeddings), torch.from_numpy(waveform), fps, max_offset, self.batch_size)


class S3DNeRFPipeline(DiffusionPipeline):
    r"""Single-shot speech-driven talking-head synthesis with a 3D (tri-plane NeRF) face (S³D-NeRF).

    Components (roles, PAPER.md):
        appearance_encoder ([`HierarchicalAppearanceEncoder`]): source portrait -> multi-scale tri-plane.
        audio_encoder ([`AudioEncoder`]): per-frame speech window -> a_dri.
        deformation_field ([`CrossModalDeformationField`]): slot attention + cross-attention + U-Net -> Δx.
        renderer ([`TriPlaneRenderer`]): NeRF decoder and volume rendering -> coarse feature image.
        super_resolution ([`SuperResolution`]): coarse render + source -> final frame.
        lip_sync ([`LipSyncDiscriminator`]): the lip-sync score of the result.
    """

    model_cpu_offload_seq = "appearance_encoder->audio_encoder->deformation_field->renderer->super_resolution->lip_sync"

    def __init__(
        self,
        appearance_encoder: HierarchicalAppearanceEncoder,
        audio_encoder: AudioEncoder,
        deformation_field: CrossModalDeformationField,
        renderer: TriPlaneRenderer,
        super_resolution: SuperResolution,
        lip_sync: LipSyncDiscriminator,
    ) -> None:
        super().__init__()
        self.register_modules(
            appearance_encoder=appearance_encoder,
            audio_encoder=audio_encoder,
            deformation_field=deformation_field,
            renderer=renderer,
            super_resolution=super_resolution,
            lip_sync=lip_sync,
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs) -> "S3DNeRFPipeline":
        """Load from a local folder (offline) or a Hub repo id (downloaded with ``snapshot_download`` first, since
        diffusers alone refuses third-party component classes from a Hub id). Safetensors only."""
        path = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(path):
            from huggingface_hub import snapshot_download

            path = snapshot_download(path, revision=kwargs.pop("revision", None), allow_patterns=["*.json", "*.safetensors", "*.md"])
        kwargs["use_safetensors"] = True
        return super().from_pretrained(path, **kwargs)

    @property
    def fast_engine(self) -> FastEngine:
        """The fast engine over this pipeline's components (same weights; see :mod:`s3d_pipeline.engines.fast`)."""
        if getattr(self, "_fast_engine", None) is None:
            self._fast_engine = FastEngine(self.audio_encoder, self.deformation_field, self.renderer, self.super_resolution)
        return self._fast_engine

    @property
    def reference_engine(self) -> ReferenceEngine:
        """The reference engine over this pipeline's components: every network as written (what training runs)."""
        if getattr(self, "_reference_engine", None) is None:
            self._reference_engine = ReferenceEngine(self.audio_encoder, self.deformation_field, self.renderer, self.super_resolution)
        return self._reference_engine

    @property
    def resolution(self) -> int:
        """Frame size R the networks work at (the coarse render times the super-resolution's x4), and the frames'
        default size; with the warp head frames can also be 2R (``resolution=`` of :meth:`__call__`)."""
        return self.renderer.config.ray_resolution * 4

    def check_resolution(self, resolution: int) -> None:
        """Frames are R, or 2R when the super-resolution warps the source (the detail then comes from the photo)."""
        sizes = (self.resolution, 2 * self.resolution) if self.super_resolution.warps else (self.resolution,)
        if resolution not in sizes:
            reason = "" if self.super_resolution.warps else " (larger frames need a super-resolution that warps the source)"
            raise ValueError(f"`resolution` must be {' or '.join(map(str, sizes))} for these weights{reason}, got {resolution}")

    # ------------------------------------------------------------------ inputs
    def check_inputs(
        self, image, audio, fps: float, output_type: str, batch_size: int, mouth_amplitude: float, max_size: Optional[int] = None
    ) -> None:
        if image is None:
            raise ValueError("`image` is required: a portrait path, PIL image or (H, W, 3) array")
        if audio is None:
            raise InvalidAudioError("`audio` is required: a speech file path or a (waveform, sample_rate) tuple")
        if not (1 <= fps <= 60):
            raise ValueError(f"`fps` must be between 1 and 60, got {fps}")
        if output_type not in ("np", "pil", "pt"):
            raise ValueError(f"`output_type` must be 'np', 'pil' or 'pt', got {output_type!r}")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {batch_size}")
        if not (0.0 <= mouth_amplitude <= 3.0):
            raise ValueError(f"`mouth_amplitude` must be between 0 and 3, got {mouth_amplitude}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"`max_size` must be a positive number of pixels, or None to keep the photo's size; got {max_size}")

    def check_output_memory(self, identity: Identity, canvas: Optional[PreparedPortrait], num_frames: int, output_type: str) -> None:
        """Refuse, before anything is rendered, a :meth:`__call__` whose result would need more than
        ``OUTPUT_MEMORY_SHARE`` of the memory available now: its frames as ``output_type`` (at the size of ``canvas``,
        the photo they are pasted into, or of the face crop when it is None) and its per-frame depth and attention
        maps (float32 at the crop's size, an upper bound for the depth).

        Raises:
            OutputTooLargeError: naming the bytes needed and the ways to the same video that hold no whole clip.
        """
        height, width = canvas.original.shape[:2] if canvas is not None else (identity.resolution, identity.resolution)
        per_frame = height * width * _BYTES_PER_PIXEL[output_type] + 2 * 4 * identity.resolution**2
        needed, allowed = num_frames * per_frame, int(OUTPUT_MEMORY_SHARE * available_memory())
        if needed > allowed:
            raise OutputTooLargeError(
                f"{num_frames} frames of {width}x{height} returned together would need {needed / 1e9:.1f} GB ({needed} bytes), "
                f"more than the {allowed / 1e9:.1f} GB one call may hold (half of the memory available now). Write the video "
                "with pipe.export(image, audio, 'talking.mp4'), or iterate pipe.stream(image, audio) to use the frames as they "
                "come: both hold one chunk at a time, whatever the clip's length. Or ask for fewer pixels: crop=True (the face "
                "crop), a smaller max_size, or shorter audio.",
                bytes_needed=needed,
                bytes_allowed=allowed,
            )

    @staticmethod
    def head_poses(yaw: PoseInput, pitch: PoseInput, roll: PoseInput, num_frames: int) -> torch.Tensor:
        """Pose offsets from the source pose, each a scalar or a per-frame sequence -> (N, 3) degrees."""
        columns = []
        for name, value in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
            v = torch.as_tensor(np.asarray(value, dtype=np.float32)).flatten()
            if v.numel() == 1:
                v = v.expand(num_frames)
            elif v.numel() != num_frames:
                raise InvalidPoseError(f"`{name}` has {v.numel()} values but the audio gives {num_frames} frames: pass a scalar or one value per frame")
            if not torch.all(torch.isfinite(v)):
                raise InvalidPoseError(f"`{name}` contains NaN or infinite values")
            limit = POSE_LIMITS[name]
            if v.abs().max() > limit:
                raise InvalidPoseError(f"`{name}` must stay within ±{limit:g}° of the source pose (got {float(v.abs().max()):.1f}°)")
            columns.append(v)
        return torch.stack(columns, dim=-1)

    # ------------------------------------------------------------------ stages
    @torch.no_grad()
    def encode_identity(self, image: ImageInput, aligned: bool = False, fast: bool = False, resolution: Optional[int] = None) -> Identity:
        """Lift a portrait into the model once (the single-shot step); pass the result back as ``identity=``.

        With ``fast=True`` the fast engine's per-identity cache is built too (otherwise on its first use);
        ``resolution``: the frames' size (see :meth:`check_resolution`; default :attr:`resolution`).
        """
        resolution = resolution or self.resolution
        self.check_resolution(resolution)
        portrait = prepare_portrait(image, aligned=aligned, resolution=resolution)
        source = torch.from_numpy(portrait.aligned).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)  # (1, 3, R, R)
        # Frames are composited onto the whole source (the super-resolution's features still come from the source
        # with its mouth hidden): where the mask stays below 1 inside the hidden region (the chin below the render)
        # the source's own pixels show, not the grey (see :class:`~s3d_pipeline.models.super_resolution.SuperResolution`).
        identity = encode_identity(
            self.appearance_encoder, self.deformation_field, self.super_resolution, source.to(self.device), self.resolution, portrait=portrait
        )
        if fast:
            self.fast_engine.prepare(identity)
        return identity

    @torch.no_grad()
    def encode_audio(self, waveform: np.ndarray, num_frames: int, fps: float) -> torch.Tensor:
        """(S,) 16 kHz speech -> per-frame feature windows (N, F, W) for the audio encoder."""
        return self.audio_encoder.frame_windows(torch.from_numpy(waveform).to(self.device), num_frames, fps)

    @torch.no_grad()
    def render_frames(
        self,
        identity: Identity,
        audio_windows: torch.Tensor,
        cam2world: torch.Tensor,
        mouth_amplitude: float = 1.0,
        generator: Optional[torch.Generator] = None,
        fast: bool = True,
    ) -> FrameBatch:
        """The per-frame path for a chunk of n frames (a_dri -> Δx field -> volume render -> super-resolution), by
        the fast engine or, with ``fast=False``, the reference engine (which alone takes ``generator``).

        Args:
            audio_windows: (n, F, W); cam2world: (n, 4, 4) target cameras in the tri-plane frame.
        """
        if not fast:
            return self.reference_engine.render(identity, audio_windows, cam2world, mouth_amplitude, generator=generator)
        return self.fast_engine.render(identity, audio_windows, cam2world, mouth_amplitude)

    @staticmethod
    def _attention_picture(attention_map: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """Cross-modal attention (n, g, g) resampled to the frames' size (n, R, R)."""
        return torch.nn.functional.interpolate(attention_map[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]

    def iter_frames(
        self,
        identity: Identity,
        waveform: np.ndarray,
        poses: torch.Tensor,
        fps: float,
        batch_size: int = 8,
        mouth_amplitude: float = 1.0,
        generator: Optional[torch.Generator] = None,
        fast: bool = True,
    ) -> Iterator[FrameBatch]:
        """Yield rendered chunks in order, for ``poses`` (N, 3): the first frame alone (so a stream shows it after
        one frame's work, not a batch's), then up to ``batch_size`` frames at a time."""
        num_frames = poses.shape[0]
        windows = self.encode_audio(waveform, num_frames, fps)
        cams = pose_to_cam2world(poses[:, 0], poses[:, 1], poses[:, 2]).to(self.device)  # tri-plane frame
        bounds = [0, *range(1, num_frames, batch_size), num_frames]  # chunk edges; num_frames >= 1
        for start, stop in zip(bounds, bounds[1:]):
            yield self.render_frames(identity, windows[start:stop], cams[start:stop], mouth_amplitude, generator, fast=fast)

    # ------------------------------------------------------------------ call
    def _prepare_inputs(self, image, audio, yaw, pitch, roll, fps, identity, aligned, crop, max_size, mouth_amplitude, batch_size, generator, output_type, fast):
        """Steps 1-4 shared by :meth:`__call__`, :meth:`stream` and :meth:`export` -> (waveform, poses (N, 3), identity,
        canvas): the portrait to paste frames back into (its photo at most ``max_size`` on its longer side, see
        :func:`~s3d_pipeline.face.fit_output`), or None for the face crop."""
        # 1. Check inputs
        self.check_inputs(image if identity is None else identity, audio, fps, output_type, batch_size, mouth_amplitude, max_size)
        if fast and generator is not None:
            raise ValueError("`generator` jitters the reference engine's ray samples; the fast engine is deterministic: pass fast=False to use it")

        # 2. Load the speech; the video length follows from it
        waveform = load_audio(audio)
        if waveform.size / SAMPLE_RATE > MAX_AUDIO_SECONDS:
            raise InvalidAudioError(f"the audio lasts {waveform.size / SAMPLE_RATE:.0f} s; the limit is {MAX_AUDIO_SECONDS:.0f} s: split it into shorter clips")
        num_frames = num_video_frames(waveform.size, fps)
        waveform = np.pad(waveform, (0, max(0, round(num_frames / fps * SAMPLE_RATE) - waveform.size)))[: round(num_frames / fps * SAMPLE_RATE)]

        # 3. Head poses (offsets from the source pose) per frame
        poses = self.head_poses(yaw, pitch, roll, num_frames)

        # 4. Encode the identity (once)
        if identity is None:
            identity = self.encode_identity(image, aligned=aligned, fast=fast)
        if crop is None:
            crop = identity.portrait.backend == "pre-aligned"
        return waveform, poses, identity, None if crop else fit_output(identity.portrait, max_size)

    def _output_chunks(self, identity, waveform, poses, fps, batch_size, mouth_amplitude, generator, canvas, fast):
        """Step 5, chunk by chunk: (aligned frames (n, 3, R, R) in [0, 1], output frames, the rendered chunk).

        The output frames are the aligned frames themselves when ``canvas`` is None (the face crop), else the head
        pasted back into the canvas's photo, (n, H, W, 3) uint8: one chunk at a time, and never as floats at the
        photo's size (4 bytes a channel: 192 MB a frame of a 4000x4000 photo).
        """
        for chunk in self.iter_frames(identity, waveform, poses, fps, batch_size, mouth_amplitude, generator, fast=fast):
            aligned = chunk.frames.cpu()
            yield aligned, (aligned if canvas is None else paste_back(to_uint8(aligned), canvas)), chunk

    def _rendered_chunks(self, identity, waveform, poses, fps, batch_size, mouth_amplitude, generator, canvas, fast, sync, callback):
        """Step 5 as :meth:`__call__` and :meth:`export` take it: (output frames, rendered chunk) in order, the aligned
        frames fed to ``sync`` (a :class:`StreamingSyncScore` or None), the progress bar moved and
        ``callback(frames_done, total_frames)`` called once the caller has taken each chunk."""
        num_frames, done = poses.shape[0], 0
        with self.progress_bar(total=num_frames) as progress:
            for aligned, frames, chunk in self._output_chunks(identity, waveform, poses, fps, batch_size, mouth_amplitude, generator, canvas, fast):
                if sync is not None:
                    sync.add(aligned)
                yield frames, chunk
                done += aligned.shape[0]
                progress.update(aligned.shape[0])
                if callback is not None:
                    callback(done, num_frames)

    @torch.no_grad()
    def stream(
        self,
        image: Optional[ImageInput] = None,
        audio: Optional[AudioInput] = None,
        *,
        yaw: PoseInput = 0.0,
        pitch: PoseInput = 0.0,
        roll: PoseInput = 0.0,
        fps: float = 25.0,
        identity: Optional[Identity] = None,
        aligned: bool = False,
        crop: Optional[bool] = None,
        max_size: Optional[int] = MAX_OUTPUT_SIDE,
        mouth_amplitude: float = 1.0,
        batch_size: int = 8,
        generator: Optional[torch.Generator] = None,
        fast: bool = True,
    ) -> Iterator[np.ndarray]:
        r"""Generate a talking-head video chunk by chunk, yielding each chunk as soon as it is rendered.

        Memory stays flat in the video's length: no frame is kept after it is yielded (only the speech and its
        per-frame feature windows are held, about 0.23 MB per second of audio), and a chunk is pasted back into the
        photo on its own, as uint8. Arguments as in :meth:`__call__`; ``fast=False`` streams the reference engine. To
        write the video with its lip-sync score, see :meth:`export`.

        Yields:
            (n, H, W, 3) uint8 frames: the first frame alone, then ``batch_size`` at a time (the last chunk may be
            shorter). Concatenated, they equal ``__call__(..., fast=fast).frames``.

        Examples:
            ```py
            >>> from s3d_pipeline import S3DNeRFPipeline
            >>> from s3d_pipeline.video import VideoWriter
            >>> from s3d_pipeline.audio import load_audio

            >>> pipe = S3DNeRFPipeline.from_pretrained("checkpoints/s3d-nerf-demo")
            >>> speech = load_audio("assets/speech.wav")
            >>> with VideoWriter("talking.mp4", fps=25, audio=speech) as writer:
            ...     for chunk in pipe.stream("assets/portrait.png", (speech, 16000)):
            ...         writer.write(chunk)
            ```
        """
        waveform, poses, identity, canvas = self._prepare_inputs(
            image, audio, yaw, pitch, roll, fps, identity, aligned, crop, max_size, mouth_amplitude, batch_size, generator, "np", fast
        )
        for _, frames, _ in self._output_chunks(identity, waveform, poses, fps, batch_size, mouth_amplitude, generator, canvas, fast):
            yield self._postprocess(frames, "np")

    @torch.no_grad()
    def __call__(
        self,
        image: Optional[ImageInput] = None,
        audio: Optional[AudioInput] = None,
        *,
        yaw: PoseInput = 0.0,
        pitch: PoseInput = 0.0,
        roll: PoseInput = 0.0,
        fps: float = 25.0,
        identity: Optional[Identity] = None,
        aligned: bool = False,
        crop: Optional[bool] = None,
        max_size: Optional[int] = MAX_OUTPUT_SIDE,
        mouth_amplitude: float = 1.0,
        batch_size: int = 8,
        generator: Optional[torch.Generator] = None,
        output_type: str = "np",
        return_dict: bool = True,
        compute_sync: bool = True,
        callback_on_frame_end: Optional[Callable[[int, int], None]] = None,
        fast: bool = True,
    ):
        r"""Generate a talking-head video and return all its frames at once.

        The result is held whole in memory (a 4000x4000 frame is 48 MB as uint8, so a minute at 25 FPS would be
        72 GB): a call whose frames would need more than half of the memory available is refused before rendering,
        with an :class:`~s3d_pipeline.errors.OutputTooLargeError` that says how much it needs. To write a video,
        :meth:`export` streams it into the mp4 as it renders; :meth:`stream` yields the frames chunk by chunk. Both
        hold one chunk at a time, whatever the clip's length.

        Args:
            image: the source portrait (path, PIL image or (H, W, 3) array). Ignored when ``identity`` is given.
            audio: speech, a path (wav, mp3, flac, ogg, m4a) or ``(waveform, sample_rate)``; any rate, any channels.
            yaw, pitch, roll: head-pose offsets from the source pose in degrees, a scalar or one value per frame
                (limits: yaw ±30, pitch ±20, roll ±15).
            fps: video frame rate; the video gets ``round(duration * fps)`` frames.
            identity: the result of :meth:`encode_identity`, to skip re-encoding the same portrait.
            aligned: the image is already a face crop in the model's framing (skip detection and alignment).
            crop: return the aligned face crop (True) or the whole photo with the head pasted back (False).
                Default: full frame for a photo, the crop for a pre-aligned face.
            max_size: longest side in pixels of a full-frame output (default 1920, ``face.MAX_OUTPUT_SIDE``): larger
                photos are shrunk to it before the head is pasted back; None keeps the photo's size.
            mouth_amplitude: scales the speech-driven displacement Δx (1 = as trained, 0 = still face).
            batch_size: frames rendered together.
            generator: jitters the reference engine's ray samples within their bins (reproducible for a seed);
                without it, samples sit at bin centres. Needs ``fast=False``: the fast engine is deterministic.
            output_type: "np" (N, H, W, 3) uint8, "pil" list of images, or "pt" (N, 3, H, W) floats in [0, 1].
            return_dict: return an [`S3DNeRFPipelineOutput`] rather than a tuple.
            compute_sync: score the result with the lip-sync discriminator.
            callback_on_frame_end: called as ``callback(frames_done, total_frames)`` after each chunk.
            fast: render with the fast engine (default; :mod:`s3d_pipeline.engines.fast`: same weights, cached
                identity, fewer samples, bf16 where the CPU computes it natively; ``s3d-nerf bench`` reports its PSNR
                against the reference) or, with ``fast=False``, the reference engine, which evaluates every network
                as written (several times slower). For streaming see :meth:`stream`.

        Returns:
            [`S3DNeRFPipelineOutput`] or ``(frames, sync_confidence)``.

        Raises:
            OutputTooLargeError: the frames would not fit in memory together (nothing is rendered).
        """
        # 1.-4. Check inputs, load the speech, head poses, encode the identity
        waveform, poses, identity, canvas = self._prepare_inputs(
            image, audio, yaw, pitch, roll, fps, identity, aligned, crop, max_size, mouth_amplitude, batch_size, generator, output_type, fast
        )
        num_frames = poses.shape[0]

        # 5. Refuse, before rendering, a result that would not fit in memory
        self.check_output_memory(identity, canvas, num_frames, output_type)

        # 6. Render chunk by chunk into the result, scoring lip sync on the aligned frames the discriminator was trained on
        sync = StreamingSyncScore(self.lip_sync) if compute_sync else None
        output, depths, attentions, done = [] if output_type == "pil" else None, [], [], 0
        for frame_chunk, chunk in self._rendered_chunks(
            identity, waveform, poses, fps, batch_size, mouth_amplitude, generator, canvas, fast, sync, callback_on_frame_end
        ):
            frame_chunk = self._postprocess(frame_chunk, output_type)
            if output_type == "pil":
                output += frame_chunk
            else:
                if output is None:  # the whole result allocated once and filled in place: no list of chunks to concatenate
                    shape = (num_frames, *frame_chunk.shape[1:])
                    output = torch.empty(shape) if output_type == "pt" else np.empty(shape, dtype=np.uint8)
                output[done : done + len(frame_chunk)] = frame_chunk
            done += len(frame_chunk)
            depths.append(chunk.depth.cpu())
            if chunk.attention is not None:
                attentions.append(self._attention_picture(chunk.attention, chunk.image.shape[-2:]).cpu())
        score = sync.score(waveform, fps) if sync is not None else None

        # 7. Output
        if not return_dict:
            return output, (score.confidence if score is not None else None)
        return S3DNeRFPipelineOutput(
            frames=output,
            fps=float(fps),
            audio=waveform,
            sample_rate=SAMPLE_RATE,
            sync_confidence=score.confidence if score is not None else None,
            sync_offset=score.offset if score is not None else None,
            sync_distances=score.distances.numpy() if score is not None else None,
            sync_per_window=score.per_window.numpy() if score is not None else None,
            depth=torch.cat(depths).numpy(),
            attention_map=torch.cat(attentions).numpy() if attentions else None,
            backend={"face": identity.portrait.backend, "audio": self.audio_encoder.config.frontend},
        )

    @torch.no_grad()
    def export(
        self,
        image: Optional[ImageInput] = None,
        audio: Optional[AudioInput] = None,
        path: Optional[Union[str, os.PathLike]] = None,
        *,
        yaw: PoseInput = 0.0,
        pitch: PoseInput = 0.0,
        roll: PoseInput = 0.0,
        fps: float = 25.0,
        identity: Optional[Identity] = None,
        aligned: bool = False,
        crop: Optional[bool] = None,
        max_size: Optional[int] = MAX_OUTPUT_SIDE,
        mouth_amplitude: float = 1.0,
        batch_size: int = 8,
        generator: Optional[torch.Generator] = None,
        compute_sync: bool = True,
        frame_filter: Optional[Callable[[np.ndarray], np.ndarray]] = None,
        metadata: Optional[dict] = None,
        callback_on_frame_end: Optional[Callable[[int, int], None]] = None,
        fast: bool = True,
    ) -> S3DNeRFPipelineOutput:
        r"""Generate a talking-head video straight into an H.264 + AAC mp4 with the speech, in memory independent of
        its length: each chunk is pasted back and handed to the encoder as it is rendered, then dropped, and the
        lip-sync score is computed on the way (:class:`StreamingSyncScore`). The file appears complete or not at all
        (:class:`~s3d_pipeline.video.VideoWriter`).

        Args:
            path: the mp4 to write (replaced atomically).
            frame_filter: applied to every (n, H, W, 3) uint8 chunk before it is encoded, returning frames of the same
                size (the CLI and the app burn in the "AI-generated" label with it).
            metadata: mp4 tags, e.g. ``{"comment": "AI-generated"}``.
            Others as in :meth:`__call__`.

        Returns:
            [`S3DNeRFPipelineOutput`] without ``frames`` (they are in the file): the speech, the lip-sync score and
            sync over time as :meth:`__call__` gives them, ``depth`` the middle frame's depth (1, r, r) and
            ``attention_map`` the attention averaged over the clip (1, R, R), pictures that do not grow with it.

        Examples:
            ```py
            >>> from s3d_pipeline import S3DNeRFPipeline

            >>> pipe = S3DNeRFPipeline.from_pretrained("checkpoints/s3d-nerf-demo")
            >>> out = pipe.export("assets/portrait.png", "assets/speech.wav", "talking.mp4")
            >>> out.sync_confidence
            ```
        """
        if path is None:
            raise ValueError("`path` is required: the mp4 to write")
        # 1.-4. Check inputs, load the speech, head poses, encode the identity
        waveform, poses, identity, canvas = self._prepare_inputs(
            image, audio, yaw, pitch, roll, fps, identity, aligned, crop, max_size, mouth_amplitude, batch_size, generator, "np", fast
        )
        num_frames, middle = poses.shape[0], poses.shape[0] // 2

        # 5. Render chunk by chunk into the encoder; keep the score's embeddings, one depth map and an attention sum
        sync = StreamingSyncScore(self.lip_sync) if compute_sync else None
        depth, attention_sum, done = None, None, 0
        with VideoWriter(path, fps, audio=waveform, sample_rate=SAMPLE_RATE, metadata=metadata) as writer:
            for frame_chunk, chunk in self._rendered_chunks(
                identity, waveform, poses, fps, batch_size, mouth_amplitude, generator, canvas, fast, sync, callback_on_frame_end
            ):
                frame_chunk = self._postprocess(frame_chunk, "np")  # (n, H, W, 3) uint8
                writer.write(frame_chunk if frame_filter is None else frame_filter(frame_chunk))
                if done <= middle < done + len(frame_chunk):
                    depth = chunk.depth[middle - done].cpu()  # (r, r)
                if chunk.attention is not None:
                    chunk_sum = chunk.attention.sum(dim=0).cpu()  # (g, g)
                    attention_sum = chunk_sum if attention_sum is None else attention_sum + chunk_sum
                done += len(frame_chunk)
        score = sync.score(waveform, fps) if sync is not None else None

        # 6. Output: what the video cannot show
        return S3DNeRFPipelineOutput(
            frames=None,
            fps=float(fps),
            audio=waveform,
            sample_rate=SAMPLE_RATE,
            sync_confidence=score.confidence if score is not None else None,
            sync_offset=score.offset if score is not None else None,
            sync_distances=score.distances.numpy() if score is not None else None,
            sync_per_window=score.per_window.numpy() if score is not None else None,
            depth=depth[None].numpy(),
            attention_map=None if attention_sum is None else self._attention_picture(attention_sum[None] / num_frames, (identity.resolution,) * 2).numpy(),
            backend={"face": identity.portrait.backend, "audio": self.audio_encoder.config.frontend},
        )

    @staticmethod
    def _postprocess(frames: Union[torch.Tensor, np.ndarray], output_type: str):
        """A chunk of output frames, the face crop (n, 3, R, R) floats in [0, 1] or pasted back (n, H, W, 3) uint8, as
        ``output_type``: "np" (n, H, W, 3) uint8, "pil" images, or "pt" (n, 3, H, W) floats in [0, 1]."""
        if output_type == "pt":
            return frames if torch.is_tensor(frames) else torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)
        array = to_uint8(frames) if torch.is_tensor(frames) else frames  # (n, H, W, 3)
        if output_type == "pil":
            return [PIL.Image.fromarray(f) for f in array]
        return array
