"""``s3d-nerf bench --json`` on the tiny architecture: a short run prints every required key on its last line."""

import json
import subprocess
import sys

from s3d_pipeline.cli import build_parser

REQUIRED = {"fps", "reference_fps", "psnr_vs_reference", "identity_encode_ms", "first_frame_ms", "peak_rss_mb_1s", "peak_rss_mb_6s", "stages_ms", "loadavg"}


def test_peak_rss_is_measured_for_10_and_60_seconds_by_default():
    # The report names each peak RSS after its speech length, so the default run prints peak_rss_mb_10s / _60s.
    assert tuple(build_parser(["bench"]).parse_args(["bench"]).rss_seconds) == (10.0, 60.0)


def test_bench_json_reports_every_measurement():
    cmd = [sys.executable, "-m", "s3d_pipeline.cli", "bench", "--config", "tiny", "--json",
           "--frames", "4", "--reference-frames", "4", "--batch-size", "4", "--repeats", "1", "--rss-seconds", "1", "6", "--fast-dtype", "bfloat16"]  # short lengths keep the test fast  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert REQUIRED <= set(report)
    assert report["fps"] > 0 and report["reference_fps"] > 0
    assert report["psnr_vs_reference"] > 30
    assert set(report["stages_ms"]) == {"audio", "deformation", "rendering", "super_resolution", "to_uint8"}
    assert report["peak_rss_mb_6s"] >= report["peak_rss_mb_1s"] > 0
    assert report["config"]["fast_dtype"] == "bfloat16"  # asked for, whatever this CPU would have chosen
