"""The real-photo lip meter: drive real portraits with real speech and measure, on the video a user would
see, whether the mouth moves with the speech and the face stays the person in the photo.

Every portrait is driven by every speech clip with the pipeline's defaults (fast engine, no head motion,
25 fps). The measurements are made on the whole photo with the head pasted back (the pipeline's default
output for a photo), so the static baseline is the photo itself and identity and sharpness compare like
with like; the pasted frames are made from the aligned crops with the pipeline's own paste-back, and the
crops go to the lip-sync discriminator, which was trained on them.

Per video (N frames):
  - ``opening``: inner-lip gap over the eye-centre distance per frame, from MediaPipe face-mesh landmarks
    (:mod:`s3d_pipeline.face_mesh`, 68 iBUG points) fitted in the photo's face box;
  - ``opening_var``: its spread, 95th minus 5th percentile (eye distances; a still mouth gives 0);
  - ``mouth_corr`` / ``mouth_lag``: Pearson r of the opening with the speech's loudness envelope (RMS of each
    frame's 1/fps window) at the best lag in ±``MAX_LAG`` frames; lag > 0 means the mouth moves after the sound;
  - ``csim``: mean cosine of face-recognition embeddings (:mod:`.face_embedding`) of every ``csim_every``-th
    frame against the photo's;
  - ``sharpness``: mean variance of the Laplacian over the photo's face box, divided by the photo's;
  - ``sync_conf`` / ``sync_offset``: the lip-sync discriminator's confidence and AV offset (frames);
  - ``faces_missed``: frames where the face mesh found no face (left out of the measures above).

Baselines, scored against the same speech: ``static``, the photo repeated (what no animation scores) and
``shuffled``, the portrait driven by the next clip's speech (looped or cut to length): what an unrelated
mouth motion scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from scipy import ndimage

from ..audio import SAMPLE_RATE, load_audio
from ..engines import Identity
from ..errors import FaceNotFoundError
from ..face import FaceBox, LandmarkModel, PreparedPortrait, paste_back
from ..models.lip_sync import LipSyncDiscriminator
from ..pipeline_s3d_nerf import S3DNeRFPipeline
from . import metrics
from .face_embedding import FaceEmbedder, cosine

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SPEECH_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
VARIANTS = ("model", "static", "shuffled")
METRICS = ("mouth_corr", "mouth_lag", "opening_var", "csim", "sharpness", "sync_conf", "sync_offset", "faces_missed")
MAX_LAG = 2  # frames


def list_media(folder: Path, suffixes: Sequence[str]) -> List[Path]:
    """Files in ``folder`` (not recursive) with one of ``suffixes``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def speech_envelope(waveform: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """Loudness per video frame: RMS of the 16 kHz speech (S,) over each frame's 1/fps window -> (N,).

    Frames past the end of the speech read 0.
    """
    edges = np.round(np.arange(num_frames + 1) * SAMPLE_RATE / fps).astype(int)
    power = np.concatenate([[0.0], np.cumsum(np.asarray(waveform, np.float64) ** 2)])  # (S + 1,)
    ends = np.minimum(edges, waveform.size)
    energy = power[ends[1:]] - power[ends[:-1]]  # (N,)
    return np.sqrt(energy / np.maximum(edges[1:] - edges[:-1], 1))


def lagged_correlation(opening: np.ndarray, envelope: np.ndarray, max_lag: int = MAX_LAG) -> Tuple[Optional[float], Optional[int]]:
    """Best Pearson r of ``opening[t]`` with ``envelope[t - lag]`` over lags in [-max_lag, max_lag], and that lag.

    Both series are (N,); frames where the opening is NaN (no face found) are left out. (None, None) when r is
    undefined at every lag (a still mouth, silence).
    """
    n = len(opening)
    best: Tuple[Optional[float], Optional[int]] = (None, None)
    for lag in range(-max_lag, max_lag + 1):
        a = opening[max(lag, 0) : n + min(lag, 0)]
        b = envelope[max(-lag, 0) : n - max(lag, 0)]
        keep = np.isfinite(a)
        r = metrics.correlation(a[keep], b[keep])
        if r is not None and (best[0] is None or r > best[0]):
            best = (r, lag)
    return best


def opening_variation(opening: np.ndarray) -> Optional[float]:
    """95th minus 5th percentile of the mouth opening (N,) over the frames where a face was found."""
    values = opening[np.isfinite(opening)]
    return float(np.percentile(values, 95) - np.percentile(values, 5)) if values.size >= 3 else None


def laplacian_sharpness(rgb: np.ndarray, box: FaceBox) -> float:
    """Variance of the Laplacian of the grey image inside ``box``: (H, W, 3) uint8 -> float (higher = sharper)."""
    height, width = rgb.shape[:2]
    x0, y0 = max(int(box.x0), 0), max(int(box.y0), 0)
    x1, y1 = min(int(np.ceil(box.x1)), width), min(int(np.ceil(box.y1)), height)
    grey = rgb[y0:y1, x0:x1].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return float(ndimage.laplace(grey).var())


@dataclass
class PhotoReference:
    """What every video of one portrait is compared with."""

    portrait: PreparedPortrait
    box: FaceBox  # the photo's face box, where the face mesh is fitted on every frame
    embedding: Optional[np.ndarray]  # (D,) identity embedding of the photo
    sharpness: float


@dataclass
class RealPhotoMeter:
    """Measures talking videos of real photos; see the module docstring for every measure.

    Attributes:
        pipe: the pipeline under test, run with its defaults (fast engine).
        sync: the lip-sync discriminator that scores every variant (by default the pipeline's own).
        landmarker: a 68-point landmark model fitted in a face box (the MediaPipe face mesh); None: the mouth
            measures and CSIM are None.
        embedder: face-recognition embeddings for CSIM; None: CSIM is None.
        csim_every: embed every this many frames (the ResNet costs ~0.1 s a face on this CPU).
        fps: video frame rate.
        batch_size: frames rendered together.
    """

    pipe: S3DNeRFPipeline
    sync: LipSyncDiscriminator
    landmarker: Optional[LandmarkModel]
    embedder: Optional[FaceEmbedder] = None
    csim_every: int = 5
    fps: float = 25.0
    batch_size: int = 8
    log: Callable[[str], None] = print

    def reference(self, photo: Path) -> Tuple[PhotoReference, Identity]:
        """The photo's reference measures and its encoded identity (for :meth:`drive`)."""
        identity = self.pipe.encode_identity(str(photo), fast=True)
        portrait = identity.portrait
        box = FaceBox(*portrait.face_box)
        embedding = None
        if self.embedder is not None and self.landmarker is not None:
            embedding = self.embedder(portrait.original, self.landmarker(portrait.original, box))
        return PhotoReference(portrait, box, embedding, laplacian_sharpness(portrait.original, box)), identity

    def drive(self, identity: Identity, speech: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Aligned crops (N, R, R, 3) uint8 of the portrait driven by ``speech``, and the speech used (trimmed or
        padded to the video)."""
        out = self.pipe(identity=identity, audio=(speech, SAMPLE_RATE), crop=True, fps=self.fps, batch_size=self.batch_size, compute_sync=False)
        return out.frames, out.audio

    def landmarks(self, frames: np.ndarray, box: FaceBox) -> np.ndarray:
        """68 points per frame (N, 68, 2) in pixels, NaN where the face mesh finds no face."""
        points = np.full((len(frames), 68, 2), np.nan)
        for k, frame in enumerate(frames):
            try:
                points[k] = self.landmarker(frame, box)
            except FaceNotFoundError:
                pass
        return points

    def score(self, video: np.ndarray, crops: np.ndarray, speech: np.ndarray, reference: PhotoReference) -> Tuple[Dict[str, Optional[float]], np.ndarray]:
        """Every measure of one video: full frames (N, H, W, 3) and aligned crops (N, R, R, 3), uint8, against the
        speech (S,) at 16 kHz and the photo; and the mouth opening per frame (N,) (NaN where no face was found or
        without a landmarker)."""
        result: Dict[str, Optional[float]] = {key: None for key in METRICS}
        opening = np.full(len(video), np.nan)
        sync = self.sync.score(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(speech), self.fps)
        if sync is not None:
            result.update(sync_conf=sync.confidence, sync_offset=float(sync.offset))
        result["sharpness"] = float(np.mean([laplacian_sharpness(f, reference.box) for f in video]) / max(reference.sharpness, 1e-12))
        if self.landmarker is None:
            return result, opening
        points = self.landmarks(video, reference.box)  # (N, 68, 2)
        found = np.isfinite(points).all(axis=(1, 2))
        opening = np.where(found, metrics.mouth_opening(np.nan_to_num(points)), np.nan)  # (N,)
        r, lag = lagged_correlation(opening, speech_envelope(speech, self.fps, len(video)))
        result.update(mouth_corr=r, mouth_lag=None if lag is None else float(lag), opening_var=opening_variation(opening))
        result["faces_missed"] = float((~found).sum())
        if self.embedder is not None and reference.embedding is not None:
            picked = [k for k in range(0, len(video), self.csim_every) if found[k]]
            if picked:
                result["csim"] = float(np.mean([cosine(self.embedder(video[k], points[k]), reference.embedding) for k in picked]))
        return result, opening

    def evaluate(self, photos: Sequence[Path], speeches: Sequence[Path], sheet: Optional["ContactSheet"] = None) -> Dict:
        """Every photo driven by every speech clip: per-variant medians over pairs, and ``per_pair`` results."""
        if not photos:
            raise ValueError("no photos to evaluate (looked for " + ", ".join(PHOTO_SUFFIXES) + ")")
        if len(speeches) < 2:
            raise ValueError("the real-photo meter needs at least 2 speech clips (the shuffled baseline borrows another clip's speech)")
        waveforms = [load_audio(str(path)) for path in speeches]
        per_pair: List[Dict] = []
        for photo in photos:
            reference, identity = self.reference(photo)
            portrait = reference.portrait
            for k, speech_path in enumerate(speeches):
                crops, speech = self.drive(identity, waveforms[k])
                other = np.resize(waveforms[(k + 1) % len(waveforms)], speech.size)  # looped or cut to length
                crops_shuffled, _ = self.drive(identity, other)
                video = paste_back(crops, portrait)  # (N, H, W, 3)
                n = len(video)
                still = np.repeat(portrait.original[None], n, axis=0)
                model, opening = self.score(video, crops, speech, reference)
                result = {
                    "photo": Path(photo).name,
                    "speech": Path(speech_path).name,
                    "frames": n,
                    "model": model,
                    "static": self.score(still, np.repeat(portrait.aligned[None], n, axis=0), speech, reference)[0],
                    "shuffled": self.score(paste_back(crops_shuffled, portrait), crops_shuffled, speech, reference)[0],
                }
                per_pair.append(result)
                if sheet is not None:
                    sheet.add(result, portrait.original, video, reference.box, opening)
                m, s = result["model"], result["shuffled"]
                self.log(f"{result['photo']} x {result['speech']}: r {_fmt(m['mouth_corr'])} (shuffled {_fmt(s['mouth_corr'])}) var {_fmt(m['opening_var'])} csim {_fmt(m['csim'])} sync {_fmt(m['sync_conf'])}@{m['sync_offset']}")
        summary = {variant: _median([p[variant] for p in per_pair]) for variant in VARIANTS}
        summary["per_pair"] = per_pair
        return summary


def _fmt(value: Optional[float]) -> str:
    return "None" if value is None else f"{value:.3f}"


def _median(results: List[Dict[str, Optional[float]]]) -> Dict[str, Optional[float]]:
    """Median of each measure over pairs, skipping pairs where it is None; None if no pair has it."""
    out: Dict[str, Optional[float]] = {}
    for key in METRICS:
        values = [r[key] for r in results if r[key] is not None]
        out[key] = float(np.median(values)) if values else None
    return out


@dataclass
class ContactSheet:
    """A picture of the run: one row per pair, the photo's face then the video at ``times`` (fractions of the
    clip), each tile the face box enlarged ``margin`` times, labelled with the mouth opening read there."""

    tile: int = 192
    times: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9)
    margin: float = 1.6
    _rows: List[np.ndarray] = field(default_factory=list, init=False, repr=False)

    def _tile(self, rgb: np.ndarray, box: FaceBox, label: str) -> np.ndarray:
        side = self.margin * box.size
        cx, cy = box.centre
        image = PIL.Image.fromarray(rgb).crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
        image = image.resize((self.tile, self.tile), PIL.Image.BICUBIC)
        draw = PIL.ImageDraw.Draw(image)
        draw.rectangle((0, 0, self.tile, 13), fill=(0, 0, 0))
        draw.text((3, 1), label, fill=(255, 255, 255))
        return np.asarray(image)

    def add(self, result: Dict, photo: np.ndarray, video: np.ndarray, box: FaceBox, opening: np.ndarray) -> None:
        """One row from a pair's result, the photo (H, W, 3), the model's video (N, H, W, 3) and its mouth opening (N,)."""
        tiles = [self._tile(photo, box, f"{Path(result['photo']).stem[:14]} + {Path(result['speech']).stem[-14:]}")]
        for t in self.times:
            k = min(int(t * len(video)), len(video) - 1)
            tiles.append(self._tile(video[k], box, f"frame {k}: opening {opening[k]:.3f}"))
        self._rows.append(np.concatenate(tiles, axis=1))

    def save(self, path: Path) -> None:
        if not self._rows:
            raise ValueError("the contact sheet has no rows: evaluate at least one pair first")
        PIL.Image.fromarray(np.concatenate(self._rows, axis=0)).save(path, format="PNG")
