"""Hostile and unusual media, made by the tests: every input gives a video or a typed error that says what to do,
never a crash, a hang or a half-written file. Big inputs (a 12000x12000 photo, ten minutes of audio) are built
cheaply and must be refused or decoded without trouble; the normalisers are also checked with generated inputs
(property-based, hypothesis)."""

import struct
import subprocess
import zlib

import imageio_ffmpeg
import numpy as np
import PIL.Image
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from media_helpers import probe_media, speech_like
from s3d_pipeline import export_to_video
from s3d_pipeline.app import AppConfig, GenerationRequest, TalkingHeadService
from s3d_pipeline.audio import SAMPLE_RATE, load_audio, resample
from s3d_pipeline.cli import main as cli_main
from s3d_pipeline.errors import FaceNotFoundError, InvalidAudioError, InvalidImageError
from s3d_pipeline.face import MAX_IMAGE_PIXELS, _pil_to_rgb, load_image
from s3d_pipeline.paths import DEFAULT_IMAGE

# Words by which a message tells the user what to do next.
REMEDY_WORDS = ("use", "upload", "re-export", "trim", "record", "downscale", "check", "add", "try")
ORANGE = (200, 100, 50)
HOSTILE_NAME = "portrait é 日本 $(touch pwned); `id` | & 'q' \"dq\" take:1"


def says_what_to_do(error: Exception) -> bool:
    return any(word in str(error).lower() for word in REMEDY_WORDS)


def _ffmpeg(*args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *map(str, args)], check=True)


# ------------------------------------------------------------------------------------------------ images
def _mode_image(mode: str) -> PIL.Image.Image:
    """A 6x8 image in ``mode`` showing orange (colour modes) or the grey level 156 (grey modes)."""
    if mode.startswith("I;16") or mode == "I":
        return PIL.Image.new(mode, (8, 6), 40000)  # 16-bit: 40000 / 65535 of white = 156
    if mode == "F":
        return PIL.Image.new(mode, (8, 6), 156 / 255)
    if mode == "La":
        return PIL.Image.new("LA", (8, 6), (156, 255)).convert("La")
    if mode == "PA":
        return PIL.Image.new("RGBA", (8, 6), ORANGE + (255,)).convert("PA")
    if mode in ("1", "L", "LA"):
        return PIL.Image.new("L", (8, 6), 156).convert(mode)
    if mode == "LAB":
        from PIL import ImageCms

        to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
        return ImageCms.applyTransform(PIL.Image.new("RGB", (8, 6), ORANGE), to_lab)
    return PIL.Image.new("RGB", (8, 6), ORANGE).convert(mode)


@pytest.mark.parametrize("mode", sorted(PIL.Image.MODES))
def test_every_pil_mode_becomes_the_right_rgb(mode):
    rgb = load_image(_mode_image(mode))
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    if mode == "1":
        expected = (255, 255, 255)  # 156 thresholds to white
    elif mode in ("L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        expected = (156, 156, 156)
    else:
        expected = ORANGE
    assert np.abs(rgb[0, 0].astype(int) - expected).max() <= 4, (mode, rgb[0, 0])  # P: web palette's nearest


def test_transparency_is_composited_over_white():
    half = PIL.Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.all(load_image(half) == 255)


# The transpose that undoes each EXIF orientation (2-8); orientation 1 means upright already.
EXIF_UNDO = {
    1: None,
    2: PIL.Image.Transpose.FLIP_LEFT_RIGHT,
    3: PIL.Image.Transpose.ROTATE_180,
    4: PIL.Image.Transpose.FLIP_TOP_BOTTOM,
    5: PIL.Image.Transpose.TRANSPOSE,
    6: PIL.Image.Transpose.ROTATE_270,
    7: PIL.Image.Transpose.TRANSVERSE,
    8: PIL.Image.Transpose.ROTATE_90,
}


@pytest.mark.parametrize("orientation", sorted(EXIF_UNDO))
def test_every_exif_orientation_is_turned_upright(tmp_path, orientation):
    stored = PIL.Image.new("RGB", (6, 4), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 2, 1))  # a red mark in the top-left corner of the stored pixels
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "photo.png", exif=exif)
    undo = EXIF_UNDO[orientation]
    expected = np.asarray(stored if undo is None else stored.transpose(undo))
    np.testing.assert_array_equal(load_image(tmp_path / "photo.png"), expected)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_black_png(path, side: int, complete: bool = True) -> None:
    """A 1-bit black ``side`` x ``side`` PNG written row block by row block (a few MB however large the side);
    with ``complete=False`` the header alone, as a decompression bomb would start."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header))
        if complete:
            pack = zlib.compressobj(9)
            row = b"\x00" * (1 + (side + 7) // 8)
            data = b"".join(pack.compress(row * 500) for _ in range(side // 500)) + pack.compress(row * (side % 500))
            out.write(_png_chunk(b"IDAT", data + pack.flush()))
        out.write(_png_chunk(b"IEND", b""))


def test_a_12000_pixel_square_photo_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    _huge_black_png(path, 12000)
    assert 12000 * 12000 > MAX_IMAGE_PIXELS
    with pytest.raises(InvalidImageError, match="12000x12000.*144 megapixels.*Downscale") as error:
        load_image(path)
    assert error.value.__cause__ is None  # refused from the header, not from a failed decode


def test_a_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    _huge_black_png(path, 100_000, complete=False)  # claims 10 gigapixels
    with pytest.raises(InvalidImageError, match="megapixels") as error:
        load_image(path)
    assert says_what_to_do(error.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_are_typed_errors(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt.lower()}"
    PIL.Image.open(DEFAULT_IMAGE).convert("RGB").save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidImageError, match="truncated or damaged") as error:
        load_image(path)
    assert says_what_to_do(error.value)


def test_a_one_pixel_photo_has_no_face_but_renders_as_an_aligned_crop(tiny_pipe):
    pixel = np.full((1, 1, 3), 128, np.uint8)
    assert load_image(pixel).shape == (1, 1, 3)
    with pytest.raises(FaceNotFoundError, match="aligned"):
        tiny_pipe(pixel, (speech_like(0.2), SAMPLE_RATE))
    out = tiny_pipe(pixel, (speech_like(0.2), SAMPLE_RATE), aligned=True)
    assert out.frames.shape[0] == 5 and out.frames.dtype == np.uint8


# ------------------------------------------------------------------------------------------------ audio
@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000])
@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("FLOAT", 2)])
def test_wav_at_any_rate_depth_and_layout_becomes_16k_mono(tmp_path, rate, subtype, channels):
    tone = speech_like(0.5, rate)
    sf.write(tmp_path / "s.wav", np.stack([tone] * channels, axis=1), rate, subtype=subtype)
    wave = load_audio(tmp_path / "s.wav")
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - SAMPLE_RATE // 2) <= 2
    assert abs(float(np.abs(wave).max()) - float(np.abs(tone).max())) < 0.05  # no rescaling by the depth


def test_integer_waveforms_are_scaled_by_their_full_range():
    tone = speech_like(0.25)
    as_int16 = load_audio(((tone * 32767).astype(np.int16), SAMPLE_RATE))
    as_uint8 = load_audio(((tone * 127 + 128).astype(np.uint8), SAMPLE_RATE))
    assert np.abs(as_int16 - tone).max() < 1e-3
    assert np.abs(as_uint8 - tone).max() < 0.02


def test_zero_seconds_is_an_empty_audio_error(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(InvalidAudioError, match="empty.*record or upload"):
        load_audio(tmp_path / "empty.wav")


def test_a_tenth_of_a_second_gives_a_short_video(tmp_path, tiny_pipe):
    out = tiny_pipe(str(DEFAULT_IMAGE), (speech_like(0.1), SAMPLE_RATE), fps=25)
    assert len(out.frames) in (2, 3) and out.sync_confidence is None  # shorter than one sync window
    path = export_to_video(out, tmp_path / "short.mp4")
    assert probe_media(path).video[0][0] == "h264"


def test_silence_gives_a_video_from_the_pipeline_and_a_message_from_the_app(tmp_path, tiny_pipe):
    silence = np.zeros(SAMPLE_RATE, np.float32)
    assert len(tiny_pipe(str(DEFAULT_IMAGE), (silence, SAMPLE_RATE), fps=10).frames) == 10
    sf.write(tmp_path / "silence.wav", silence, SAMPLE_RATE)
    service = TalkingHeadService(tiny_pipe, AppConfig(), output_dir=tmp_path / "out")
    with pytest.raises(InvalidAudioError, match="silent.*check the microphone"):
        service.generate(GenerationRequest(str(DEFAULT_IMAGE), str(tmp_path / "silence.wav"), consent=True))


def test_ten_minutes_decode_and_a_length_limit_refuses_them_before_decoding(tmp_path, monkeypatch):
    ten_minutes = np.tile(speech_like(1.0, 8000), 600)
    sf.write(tmp_path / "talk.wav", ten_minutes, 8000, subtype="PCM_16")
    assert abs(load_audio(tmp_path / "talk.wav").size - 600 * SAMPLE_RATE) <= 2

    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded audio the header already ruled out"))
    with pytest.raises(InvalidAudioError, match=r"600\.0 s; up to 20 s.*Trim"):
        load_audio(tmp_path / "talk.wav", max_seconds=20)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_are_refused(tmp_path, bad):
    wave = speech_like(0.5)
    wave[100] = bad
    sf.write(tmp_path / "bad.wav", wave, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(InvalidAudioError, match="NaN or infinite.*re-export"):
        load_audio(tmp_path / "bad.wav")


def test_a_text_file_named_mp3_is_a_typed_error(tmp_path):
    (tmp_path / "song.mp3").write_text("these are lyrics, not sound")
    with pytest.raises(InvalidAudioError, match="could not decode") as error:
        load_audio(tmp_path / "song.mp3")
    assert says_what_to_do(error.value)


def test_a_video_gives_its_sound_track_and_a_silent_video_a_typed_error(tmp_path):
    sf.write(tmp_path / "s.wav", speech_like(1.0, 22050), 22050)
    colour = ["-f", "lavfi", "-i", "color=c=gray:s=64x64:d=1"]
    _ffmpeg(*colour, "-i", tmp_path / "s.wav", "-shortest", "-c:v", "libx264", "-c:a", "aac", tmp_path / "clip.mp4")
    _ffmpeg(*colour, "-c:v", "libx264", tmp_path / "mute.mp4")
    wave = load_audio(tmp_path / "clip.mp4")
    assert abs(wave.size / SAMPLE_RATE - 1.0) < 0.06 and wave.std() > 0.05
    with pytest.raises(InvalidAudioError, match="video with sound"):
        load_audio(tmp_path / "mute.mp4")


# ------------------------------------------------------------------------------------------------ names
def test_non_ascii_and_shell_metacharacter_names_work_end_to_end(tmp_path, tiny_pipe):
    image = tmp_path / f"{HOSTILE_NAME}.png"
    image.write_bytes(DEFAULT_IMAGE.read_bytes())
    sf.write(tmp_path / "s.wav", speech_like(0.6), SAMPLE_RATE)
    audio = tmp_path / f"{HOSTILE_NAME}.m4a"  # compressed: decoded by the ffmpeg subprocess
    _ffmpeg("-i", tmp_path / "s.wav", "-c:a", "aac", "file:" + str(audio))
    service = TalkingHeadService(tiny_pipe, AppConfig(), output_dir=tmp_path / "out")
    result = service.generate(GenerationRequest(str(image), str(audio), consent=True, fps=10))
    assert probe_media(result.video).audio == ["aac"]
    assert not list(tmp_path.rglob("pwned"))  # nothing was run through a shell


# ------------------------------------------------------------------------------------------------ the app and the CLI
def _bad_inputs(tmp_path):
    """(image, audio, expected error) for inputs the app must refuse."""
    notes = tmp_path / "notes.mp3"
    notes.write_text("not sound")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(DEFAULT_IMAGE.read_bytes()[:500])
    bomb = tmp_path / "bomb.png"
    _huge_black_png(bomb, 100_000, complete=False)
    blank = tmp_path / "wall.png"
    PIL.Image.new("RGB", (300, 300), (128, 128, 128)).save(blank)
    speech = tmp_path / "speech.wav"
    sf.write(speech, speech_like(0.5), SAMPLE_RATE)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SAMPLE_RATE)
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(30 * 8000, np.int16), 8000)
    image = str(DEFAULT_IMAGE)
    return [
        (image, str(notes), InvalidAudioError),
        (image, str(empty), InvalidAudioError),
        (image, str(long), InvalidAudioError),
        (str(cut), str(speech), InvalidImageError),
        (str(bomb), str(speech), InvalidImageError),
        (str(blank), str(speech), FaceNotFoundError),
    ]


def test_the_app_refuses_bad_media_in_words_and_leaves_no_file(tmp_path, tiny_pipe):
    service = TalkingHeadService(tiny_pipe, AppConfig(), output_dir=tmp_path / "out")
    for image, audio, error in _bad_inputs(tmp_path):
        with pytest.raises(error) as raised:
            service.generate(GenerationRequest(image, audio, consent=True, fps=10))
        message = str(raised.value)
        assert says_what_to_do(raised.value), message
        assert str(tmp_path) not in message, message  # the server's paths stay private
        assert "aligned=True" not in message  # the app has no such argument
    assert not any((tmp_path / "out").iterdir())


def test_the_cli_speaks_in_flags_and_writes_nothing_on_error(tmp_path, tiny_pipe, capsys):
    checkpoint = tmp_path / "ckpt"
    tiny_pipe.save_pretrained(checkpoint)
    blank = tmp_path / "wall.png"
    PIL.Image.new("RGB", (300, 300), (128, 128, 128)).save(blank)
    sf.write(tmp_path / "speech.wav", speech_like(0.5), SAMPLE_RATE)
    out = tmp_path / "video.mp4"
    base = ["generate", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert cli_main([*base, "--image", str(blank), "--audio", str(tmp_path / "speech.wav")]) == 2
    err = capsys.readouterr().err
    assert "--aligned" in err and "aligned=True" not in err
    assert cli_main([*base, "--audio", str(tmp_path / "speech.wav"), "--yaw", "80"]) == 2
    assert "--yaw" in capsys.readouterr().err
    assert cli_main([*base, "--audio", str(tmp_path / "speech.wav"), "--seed", "3"]) == 2
    assert "--reference" in capsys.readouterr().err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.suffix == ".mp4" or p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ properties
@settings(max_examples=40, deadline=None)
@given(
    signal=hnp.arrays(np.float64, st.tuples(st.integers(1, 400), st.sampled_from([1, 2])), elements=st.floats(-1, 1)),
    dtype=st.sampled_from([np.int16, np.int32, np.uint8, np.float32, np.float64]),
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
)
def test_load_audio_gives_finite_16k_mono_of_the_right_length(signal, dtype, rate):
    if np.issubdtype(dtype, np.integer):  # the signal as integer PCM of that type
        info = np.iinfo(dtype)
        signal = np.clip(np.round((signal + 1) / 2 * (int(info.max) - int(info.min)) + int(info.min)), info.min, info.max)
    samples = signal.astype(dtype)
    wave = load_audio((samples, rate))
    assert wave.dtype == np.float32 and wave.ndim == 1 and np.all(np.isfinite(wave))
    longest = max(samples.shape)  # (S, C) or (C, S): samples run along the long axis
    assert abs(wave.size - longest * SAMPLE_RATE / rate) <= 1


@settings(max_examples=40, deadline=None)
@given(
    samples=hnp.arrays(np.float32, st.integers(1, 2000), elements={"min_value": -1, "max_value": 1}),
    rate=st.integers(1000, 96000),
)
def test_resample_keeps_duration_and_stays_finite(samples, rate):
    out = resample(samples, rate)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    assert abs(out.size - samples.size * SAMPLE_RATE / rate) <= 1


@given(
    samples=hnp.arrays(np.float32, st.integers(0, 50)),  # any floats, NaN and infinities included
    rate=st.one_of(st.integers(-10, 10**7), st.just(float("nan")), st.text(max_size=3)),
)
@settings(max_examples=60, deadline=None)
def test_load_audio_never_fails_untyped(samples, rate):
    try:
        wave = load_audio((samples, rate))
    except InvalidAudioError:
        return
    assert np.all(np.isfinite(wave)) and wave.size > 0


@settings(max_examples=60, deadline=None)
@given(
    image=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.bool_, np.float32, np.float64, np.int64, np.complex64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    )
)
def test_load_image_gives_rgb_of_the_same_size_or_a_typed_error(image):
    try:
        rgb = load_image(image)
    except InvalidImageError:
        return
    assert rgb.dtype == np.uint8 and rgb.shape == image.shape[:2] + (3,)


@settings(max_examples=30, deadline=None)
@given(
    rgb=hnp.arrays(np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(3))),
    mode=st.sampled_from(sorted(PIL.Image.MODES)),
)
def test_pil_images_of_any_mode_and_size_keep_their_size(rgb, mode):
    out = _pil_to_rgb(PIL.Image.fromarray(rgb).convert(mode))
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    if mode in ("RGB", "RGBX", "RGBA"):
        np.testing.assert_array_equal(out, rgb)
