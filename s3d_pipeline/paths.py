"""Where the bundled assets and the shipped checkpoint live (in the source checkout the package runs from)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "s3d-nerf-demo"
DEFAULT_IMAGE = ASSETS_DIR / "portrait_astronaut.png"
DEFAULT_AUDIO = ASSETS_DIR / "speech.wav"
