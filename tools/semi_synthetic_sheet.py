"""Contact sheet of a semi-synthetic clip source: the aligned photo, then the fitted mesh rendered at the photo's
view with the mouth at rest, open ("ah"), rounded ("oo") and shut ("m"), then turned -12 and +12 degrees (yaw)
with the mouth half open, to check by eye for holes, seams and an implausible mouth.

    python tools/semi_synthetic_sheet.py --out docs/semi_synthetic_sheet.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from s3d_pipeline.data.synth.from_photo import PhotoRenderer, articulate, fit_photo
from s3d_pipeline.data.synth.raster import TexturedRasterizer
from s3d_pipeline.rendering.cameras import pose_to_cam2world

PORTRAIT = Path(__file__).resolve().parents[1] / "assets" / "portrait_astronaut.png"
# (label, (jaw_open, lip_spread, lip_round, lip_closure), (yaw, pitch, roll) offset in degrees)
PANELS = (
    ("rest", (0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ("ah", (0.8, 0.25, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ("oo", (0.3, 0.0, 0.95, 0.0), (0.0, 0.0, 0.0)),
    ("m", (0.06, 0.0, 0.0, 1.0), (0.0, 0.0, 0.0)),
    ("yaw -12, eh", (0.5, 0.5, 0.0, 0.0), (-12.0, 0.0, 0.0)),
    ("yaw +12, eh", (0.5, 0.5, 0.0, 0.0), (12.0, 0.0, 0.0)),
)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=PORTRAIT)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    face = fit_photo(args.photo, name=args.photo.stem)
    renderer = PhotoRenderer(face, TexturedRasterizer(256))
    tiles = [_label(face.aligned, "photo (aligned)")]
    for label, visemes, offset in PANELS:
        cam2world = pose_to_cam2world(*(face.source_pose + np.array(offset)).tolist()).numpy()
        rgb, _, _ = renderer.render(articulate(face, np.array(visemes)), cam2world)
        tiles.append(_label(rgb, label))
    PIL.Image.fromarray(np.concatenate(tiles, axis=1)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
