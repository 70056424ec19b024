"""S³D-NeRF demo: a talking head from one photo and some speech.

Runs locally (``python app.py``, then open http://127.0.0.1:7860) and as a Hugging Face Space. This file only
lays out widgets and connects them: checks, rendering and pictures live in :mod:`s3d_pipeline.app`.

Named API endpoints (see the README for a ``gradio_client`` example): ``/generate`` makes the video and its
lip-sync score, ``/preview`` renders one frame at a pose.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import gradio as gr
import spaces

from s3d_pipeline.app import CONSENT_STATEMENT, AppConfig, ConsentRequiredError, GenerationRequest, TalkingHeadService
from s3d_pipeline.app.config import FPS, FRAMINGS, MAX_SEED, MOTION_LABELS, MOUTH, POSE_SLIDERS, RENDERERS
from s3d_pipeline.app.inputs import espeak_available
from s3d_pipeline.app.widgets import PortraitImage, example_inputs, readable, slider, user_errors
from s3d_pipeline.errors import S3DNeRFError
from s3d_pipeline.paths import ASSETS_DIR, DEFAULT_CHECKPOINT

INTRO = """# S³D-NeRF: a talking head from one photo
Upload a portrait and some speech (or record it, or type text), set the head pose, and generate a lip-synced
video rendered in 3D. Every video carries a visible **AI-generated** mark and an mp4 tag saying so."""
VIDEO_FOLDER = "s3d-nerf-videos"  # inside Gradio's cache folder


def build_demo(pipe, config: AppConfig = AppConfig()) -> gr.Blocks:
    """The Gradio app around a loaded :class:`~s3d_pipeline.S3DNeRFPipeline`, with its queue configured.

    Videos are written inside Gradio's own cache folder, so Gradio serves them without keeping a second copy, and
    both its cache cleaning and the service's count limit apply to them.
    """
    service = TalkingHeadService(pipe, config, output_dir=Path(gr.utils.get_upload_folder()) / VIDEO_FOLDER)

    def request(image, audio, text, consent, yaw, pitch, roll, motion, mouth_amplitude, fps, framing, seed, renderer) -> GenerationRequest:
        return GenerationRequest(image, audio, text, consent, yaw, pitch, roll, motion, mouth_amplitude, fps, framing, seed, renderer)

    @spaces.GPU
    def generate(image, audio, text, consent, yaw, pitch, roll, motion, mouth_amplitude, fps, framing, seed, renderer, progress=gr.Progress()):
        """Make the talking-head video; returns the mp4, sync confidence and offset, their reading, sync over
        time, the attention heatmap, the depth preview and the mp4 again for download."""
        with user_errors("generate the video"):
            result = service.generate(
                request(image, audio, text, consent, yaw, pitch, roll, motion, mouth_amplitude, fps, framing, seed, renderer),
                progress=lambda fraction, message: progress(fraction, desc=message),
            )
        for warning in result.warnings:
            gr.Warning(warning)
        video = str(result.video)
        return video, result.confidence, result.offset, result.reading.text, result.sync_plot, result.attention, result.depth, video

    def preview(image, audio, consent, yaw, pitch, roll, mouth_amplitude, fps, framing, seed, renderer):
        """One frame at the chosen pose, and a status line saying why there is none."""
        if not image:
            return None, "Add a portrait to see a preview."
        try:
            frame = service.preview(request(image, audio, None, consent, yaw, pitch, roll, "still", mouth_amplitude, fps, framing, seed, renderer))
        except ConsentRequiredError:
            return None, "Tick the consent box to see a preview."
        except S3DNeRFError as exc:
            return None, f"**No preview:** {readable(exc)}"
        return frame, "Preview of the first frame at this pose."

    cache_age = int(config.output_max_age)
    with gr.Blocks(title="S³D-NeRF talking head", delete_cache=(cache_age, cache_age)) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = PortraitImage(label="Portrait", sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None, height=280, elem_id="portrait")
                audio = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath")
                text = gr.Textbox(
                    label="…or type text to speak (used when no speech is given)",
                    value="",
                    lines=2,
                    max_lines=4,
                    max_length=config.max_text_characters,
                    visible=espeak_available(),
                )
                gr.Examples(example_inputs(ASSETS_DIR), inputs=[image, audio], cache_examples=False, label="Examples", elem_id="examples")
            with gr.Column(scale=1):
                with gr.Group():
                    yaw, pitch, roll = (slider(spec) for spec in POSE_SLIDERS)
                    reset = gr.Button("Reset pose", size="sm")
                motion = gr.Radio([(label, name) for name, label in MOTION_LABELS.items()], value="still", label="Head motion over the clip")
                mouth_amplitude = slider(MOUTH)
                fps = slider(FPS)
                with gr.Row():
                    framing = gr.Radio(list(FRAMINGS), value=FRAMINGS[0], label="Output", interactive=service.supports_framing)
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                renderer = gr.Radio([(label, name) for name, label in RENDERERS.items()], value="fast", label="Renderer")
            with gr.Column(scale=1):
                preview_image = gr.Image(label="Preview (one frame)", interactive=False, height=280, elem_id="preview")
                preview_status = gr.Markdown("Add a portrait to see a preview.", label="Preview status")
                consent = gr.Checkbox(label=CONSENT_STATEMENT, value=False, elem_id="consent")
                run = gr.Button("Generate video", variant="primary")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                video = gr.Video(label="Talking head (with speech)", autoplay=True, interactive=False, height=320, elem_id="video")
                download = gr.DownloadButton("Download mp4", value=None, elem_id="download")
            with gr.Column(scale=1):
                with gr.Row():
                    confidence = gr.Number(None, label="Lip-sync confidence", precision=3, interactive=False, elem_id="confidence")
                    offset = gr.Number(None, label="Audio-video offset (frames)", precision=0, interactive=False, elem_id="offset")
                reading = gr.Markdown(label="Lip-sync reading", elem_id="reading")
                plot = gr.LinePlot(x="time (s)", y="sync", label="Sync over time (above 0 = in sync)", height=200)
                with gr.Row():
                    attention = gr.Image(label="Cross-attention over the face", interactive=False, height=200)
                    depth = gr.Image(label="Depth, middle frame (near = bright)", interactive=False, height=200)

        controls = [yaw, pitch, roll, motion, mouth_amplitude, fps, framing, seed, renderer]
        run.click(
            generate,
            inputs=[image, audio, text, consent, *controls],
            outputs=[video, confidence, offset, reading, plot, attention, depth, download],
            api_name="generate",
            concurrency_limit=config.concurrency_limit,
        )
        preview_inputs = [image, audio, consent, yaw, pitch, roll, mouth_amplitude, fps, framing, seed, renderer]
        gr.on(
            [image.change, audio.change, consent.change, framing.change, renderer.change, yaw.release, pitch.release, roll.release, mouth_amplitude.release],
            preview,
            inputs=preview_inputs,
            outputs=[preview_image, preview_status],
            api_name="preview",
            trigger_mode="always_last",
            show_progress="minimal",
        )
        reset.click(
            lambda: tuple(spec.default for spec in POSE_SLIDERS), outputs=[yaw, pitch, roll], api_visibility="private"
        ).then(preview, inputs=preview_inputs, outputs=[preview_image, preview_status], api_visibility="private")
    demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.max_queue_size)
    return demo


def launch(demo: gr.Blocks, config: AppConfig = AppConfig(), **kwargs):
    """Serve the demo with the upload limit; ``kwargs`` go to ``gr.Blocks.launch`` (host, port, ...)."""
    return demo.launch(max_file_size=config.max_upload_size, footer_links=["api", "gradio"], **kwargs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint",
        default=os.environ.get("S3D_CHECKPOINT", str(DEFAULT_CHECKPOINT)),
        help="pipeline folder or Hub repo id (default: $S3D_CHECKPOINT or the shipped checkpoint)",
    )
    parser.add_argument("--host", default=None, help="address to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    args = parser.parse_args(argv)
    looks_local = os.path.sep in args.checkpoint or args.checkpoint.startswith(".")
    if looks_local and not os.path.isdir(args.checkpoint):
        parser.error(f"checkpoint folder {args.checkpoint} does not exist; pass --checkpoint or set S3D_CHECKPOINT")

    import torch

    from s3d_pipeline import S3DNeRFPipeline

    pipe = S3DNeRFPipeline.from_pretrained(args.checkpoint)
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    launch(build_demo(pipe), server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
