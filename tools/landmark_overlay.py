"""Draw the offline backend's 68 landmarks on the bundled portrait and on synthetic heads turned -30, 0 and
+30 degrees, side by side, to check by eye that the points sit on eyes, brows, nose, lips and jaw.

    python tools/landmark_overlay.py --out docs/real_landmarks.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from s3d_pipeline.face import apply_affine, load_image, offline_backend, pick_largest_face

PORTRAIT = Path(__file__).resolve().parents[1] / "assets" / "portrait_astronaut.png"
PANEL = 384
FACE_IN_PANEL = 0.5  # face box side / panel side
# Colour per iBUG group (RGB): jaw, brows, nose, eyes, lips.
GROUPS = ((slice(0, 17), (255, 220, 0)), (slice(17, 27), (255, 120, 0)), (slice(27, 36), (0, 200, 255)),
          (slice(36, 48), (0, 255, 90)), (slice(48, 68), (255, 40, 160)))  # fmt: skip


def turned_heads(yaws=(-30, 0, 30), resolution: int = 256):
    """One synthetic identity rendered at each yaw (degrees): [(H, W, 3) uint8]."""
    from s3d_pipeline.data.synth import FaceState, HeadModel, sample_person
    from s3d_pipeline.data.synth.raster import Rasterizer
    from s3d_pipeline.rendering.cameras import pose_to_cam2world

    identity = sample_person(7, "test", 1)
    head, raster, state = HeadModel(identity), Rasterizer(resolution), FaceState()
    raster.set_person(identity, head.triangles, len(head.vertices(state)))
    return [raster.render(head.vertices(state), pose_to_cam2world(yaw).numpy(), state)[0] for yaw in yaws]


def draw(rgb: np.ndarray, label: str) -> np.ndarray:
    """A PANEL-pixel square around the face (``FACE_IN_PANEL`` of it) with its 68 landmarks, face box and
    ``label`` drawn on it."""
    backend = offline_backend()
    box, _ = pick_largest_face(backend.detector(rgb))
    landmarks = backend.landmarker(rgb, box)
    scale = FACE_IN_PANEL * PANEL / box.size
    to_panel = np.array([[scale, 0.0, PANEL / 2 - scale * box.centre[0]], [0.0, scale, PANEL / 2 - scale * box.centre[1]]])
    panel = cv2.warpAffine(rgb, to_panel, (PANEL, PANEL), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    (x0, y0), (x1, y1) = apply_affine(to_panel, np.array([[box.x0, box.y0], [box.x1, box.y1]])).round().astype(int)
    cv2.rectangle(panel, (x0, y0), (x1, y1), (255, 255, 255), 1)
    for group, colour in GROUPS:
        for x, y in apply_affine(to_panel, landmarks[group]):
            cv2.circle(panel, (round(x), round(y)), 3, colour, -1, lineType=cv2.LINE_AA)
    cv2.putText(panel, label, (6, PANEL - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/real_landmarks.png"))
    args = parser.parse_args()
    panels = [draw(load_image(PORTRAIT), "assets/portrait_astronaut.png")]
    panels += [draw(rgb, f"synthetic head, yaw {yaw:+d}") for yaw, rgb in zip((-30, 0, 30), turned_heads())]
    PIL.Image.fromarray(np.concatenate(panels, axis=1)).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
