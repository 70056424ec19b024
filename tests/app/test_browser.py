"""The demo in a real browser (headless Debian chromium driven by Playwright): pick the example, confirm consent,
generate, and find a playing video with its lip-sync score; every control and output is on the page with no
horizontal overflow; a file that is not an image and a photo without a face are refused with readable messages.

Set ``S3D_APP_SCREENSHOT`` to a path to keep the full-page screenshot (docs/app_screenshot.png is made so).
"""

import os
import shutil

import PIL.Image
import pytest

from appserver import serve

playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
TIMEOUT_MS = 45_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="the browser test needs Debian's chromium package")

# Every input, control and output a user should see, by its visible label.
LABELS = [
    "Portrait", "Speech", "…or type text to speak (used when no speech is given)", "Examples",
    "Yaw (turn left / right, °)", "Pitch (look up / down, °)", "Roll (tilt sideways, °)", "Reset pose",
    "Head motion over the clip", "Mouth amplitude", "Frames per second", "Output", "Seed",
    "Preview (one frame)", "Generate video",
    "Talking head (with speech)", "Download mp4", "Lip-sync confidence", "Audio-video offset (frames)",
    "Sync over time (above 0 = in sync)", "Cross-attention over the face", "Depth, middle frame (near = bright)",
]  # fmt: skip


@pytest.fixture(scope="module")
def page(tiny_pipe):
    with serve(tiny_pipe) as url, playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("button", name="Generate video").wait_for()
        yield page
        browser.close()


def test_example_generates_a_playing_video_with_a_score(page, tmp_path):
    page.locator("#examples tbody tr").first.click()
    page.locator("#fps input[type=number]").fill("10")  # fewer frames: a quicker test
    page.locator("#fps input[type=number]").press("Enter")
    page.locator("#consent input[type=checkbox]").check()
    page.locator("#preview img").wait_for()  # the one-frame preview appears once consent is given
    page.get_by_role("button", name="Generate video").click()

    video = page.locator("#video video")
    video.wait_for()
    page.wait_for_function("() => { const v = document.querySelector('#video video'); return v && v.readyState >= 2; }")
    page.wait_for_function("() => { const v = document.querySelector('#video video'); v.play(); return !v.paused && v.currentTime > 0; }")
    confidence = page.locator("#confidence input").input_value()
    assert float(confidence) == pytest.approx(float(confidence))  # a number, not empty
    assert "Lip sync:" in page.locator("#reading").inner_text()

    for label in LABELS:
        assert page.get_by_text(label, exact=True).first.is_visible(), label
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")  # no overflow
    screenshot = os.environ.get("S3D_APP_SCREENSHOT") or str(tmp_path / "app.png")
    page.screenshot(path=screenshot, full_page=True)


def test_bad_inputs_are_refused_in_words(page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.locator("#portrait input[type=file]").set_input_files(str(notes))
    page.get_by_text("Invalid file type: notes.txt").first.wait_for()  # refused before upload

    blank = tmp_path / "wall.png"
    PIL.Image.new("RGB", (320, 320), (120, 130, 140)).save(blank)
    page.locator("#portrait button[aria-label='Remove Image']").first.click()
    page.locator("#portrait input[type=file]").set_input_files(str(blank))
    page.get_by_role("button", name="Generate video").click()
    page.get_by_text("No face was found in the portrait").first.wait_for()
