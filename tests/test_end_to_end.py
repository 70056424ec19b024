"""The shipped checkpoint on the bundled assets: the path a user runs first."""

import numpy as np
import pytest

from media_helpers import probe_media
from s3d_pipeline import S3DNeRFPipeline, export_to_video
from s3d_pipeline.audio import SAMPLE_RATE, load_audio
from s3d_pipeline.paths import DEFAULT_AUDIO, DEFAULT_CHECKPOINT, DEFAULT_IMAGE


@pytest.fixture(scope="module")
def pipe():
    pipe = S3DNeRFPipeline.from_pretrained(DEFAULT_CHECKPOINT)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def result(pipe):
    return pipe(str(DEFAULT_IMAGE), str(DEFAULT_AUDIO), yaw=10, crop=True)


def test_shipped_checkpoint_renders_the_bundled_example(result):
    duration = load_audio(DEFAULT_AUDIO).size / SAMPLE_RATE
    assert abs(len(result.frames) - round(duration * 25)) <= 1
    assert result.frames.shape[1:] == (256, 256, 3) and result.frames.dtype == np.uint8
    assert result.frames.std() > 5  # an image, not a blank
    assert result.sync_confidence is not None and result.backend["face"] != "pre-aligned"


def test_export_to_video_keeps_the_speech(result, tmp_path):
    path = export_to_video(result, tmp_path / "demo.mp4")
    info = probe_media(path)
    assert [v[0] for v in info.video] == ["h264"] and info.audio == ["aac"]
    assert abs(info.duration - result.audio.size / result.sample_rate) <= 1 / 25


def test_full_frame_output_has_the_photo_size(pipe):
    speech = load_audio(DEFAULT_AUDIO)[: SAMPLE_RATE // 5]
    out = pipe(str(DEFAULT_IMAGE), (speech, SAMPLE_RATE), compute_sync=False)
    assert out.frames.shape == (5, 384, 384, 3)


def test_shipped_lip_sync_discriminator_prefers_aligned_speech_on_an_unseen_person(pipe, tmp_path):
    """The shipped discriminator was trained on the synthetic corpus: on a person of the test split (never seen in
    training) it scores the clip's own speech above the same speech shifted by 5 frames either way."""
    from s3d_pipeline.data.clip import list_clips
    from s3d_pipeline.data.synth import CorpusConfig, render_corpus
    from s3d_pipeline.training.data import Corpus
    from s3d_pipeline.training.trainer import evaluate_syncnet

    config = CorpusConfig(out=tmp_path / "unseen", identities=2, clips_per_identity=1, seconds=3.0, seed=5, split="test", workers=1)
    render_corpus(config, log=lambda _: None)
    assert len(list_clips(tmp_path / "unseen")) == 2
    metrics = evaluate_syncnet(pipe.lip_sync, Corpus.from_folder(tmp_path / "unseen").train, pipe.resolution)
    assert metrics["cosine_aligned"] > max(metrics["cosine_shift_-5"], metrics["cosine_shift_+5"]) + 0.3
    assert metrics["aligned_beats_both_shifts"] > 0.6 and metrics["mean_abs_offset"] <= 1.0
