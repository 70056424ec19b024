"""Offscreen rasterizer for the synthetic heads (moderngl on EGL; Mesa's llvmpipe on CPU machines).

The projection reproduces :func:`s3d_pipeline.rendering.cameras.project` exactly: a world point goes to the
OpenCV camera frame with ``inv(cam2world)``, then ``u = f x / z + 0.5``, ``v = f y / z + 0.5`` (normalized,
v down). In clip space that is ``(2 f x, -2 f y, ., z)``; rows are flipped on read-back so row 0 is the top
(v = 0). A pixel index ``(row, col)`` covers ``v`` in ``[row, row + 1) / H``, so pixel coordinates are
normalized coordinates times the image size.

Outputs per frame: sRGB colour, head mask (any head geometry), and camera-space depth ``z`` (0 on the
backdrop). The backdrop is drawn once per identity and composited under the head; there is no multisampling
(Mesa's llvmpipe shades every sample, which would multiply the cost per frame). Back faces are culled. Lights live in the head frame, so a head turning under fixed lights is
rendered as the same shading seen from a moving camera: the radiance is view-consistent except specular.

Shading: per-pixel wrapped diffuse from a key and a fill light, a sky/ground ambient term scaled by the
vertex ambient occlusion, Blinn-Phong specular, and procedural detail painted from canonical coordinates
(skin noise and pores, freckles, blush, eyes with iris, pupil, lids and lashes, brows, lips, nostrils, hair
strands, teeth). The painted layout uses the same formulas as :mod:`.head` (lip profile, lids, brow line).

:class:`TexturedRasterizer` is the same camera, framebuffer and outputs for a textured mesh without shading:
a portrait lifted onto a face mesh (:mod:`.from_photo`).
"""

from __future__ import annotations

from typing import Dict, Tuple, Type, TypeVar

import numpy as np
from scipy.ndimage import zoom

from ...rendering.cameras import FOCAL
from .head import BROW_SPAN, VERTEX_FLOATS, FaceState
from .person import Person

NEAR, FAR = 1.0, 5.0
NOISE_CELLS = 64  # lattice cells per side of the noise texture

# cameras.project in clip space: world point -> OpenCV camera frame -> (2 f x, -2 f y, depth, z).
_PROJECT = """
uniform mat4 u_world2cam;
uniform float u_focal;
vec4 to_camera(vec3 p) { return u_world2cam * vec4(p, 1.0); }
vec4 to_clip(vec4 pc) {
    float zc = (pc.z * (%(far)f + %(near)f) - 2.0 * %(far)f * %(near)f) / (%(far)f - %(near)f);
    return vec4(2.0 * u_focal * pc.x, -2.0 * u_focal * pc.y, zc, pc.z);
}
""" % {"near": NEAR, "far": FAR}

_VERTEX_SHADER = (
    """
#version 330
"""
    + _PROJECT
    + """
in vec3 in_pos; in vec3 in_nrm; in vec3 in_can; in vec2 in_attr;
out vec3 v_pos; out vec3 v_nrm; out vec3 v_can; out vec2 v_attr; out float v_z;
void main() {
    vec4 pc = to_camera(in_pos);
    v_pos = in_pos; v_nrm = in_nrm; v_can = in_can; v_attr = in_attr; v_z = pc.z;
    gl_Position = to_clip(pc);
}
"""
)

_NOISE = """
uniform sampler2D u_noise;  // tileable value noise, one lattice cell = 4 texels (see _noise_texture)
// Value noise at lattice frequency 1, from one filtered texture read; z shears the lookup.
float vnoise(vec3 x) { return texture(u_noise, (x.xy + x.z * vec2(0.37, 0.61)) / %(cells)d.0).r; }
float fbm(vec3 x) { return 0.67 * vnoise(x) + 0.33 * vnoise(x * 2.03); }
""" % {"cells": NOISE_CELLS}

_FRAGMENT_SHADER = (
    """
#version 330
uniform vec3 u_cam_pos, u_key_dir, u_key_col, u_fill_col, u_noise_offset;
uniform float u_ambient, u_spec, u_shine;
uniform vec3 u_skin, u_lip, u_hair, u_brow, u_iris, u_teeth;
uniform float u_skin_noise, u_freckles, u_blush;
uniform vec4 u_eye;        // eye_x, eye_w, eye_h, iris_r
uniform vec4 u_eye_state;  // blink right, blink left, gaze x, gaze y
uniform vec4 u_mouth;      // mouth_y, mouth_w, lip_upper, lip_lower
uniform vec2 u_nose;       // tip y, half-width
uniform vec3 u_brow_geo;   // brow_y, thickness, arch
uniform vec2 u_brow_span;
in vec3 v_pos; in vec3 v_nrm; in vec3 v_can; in vec2 v_attr; in float v_z;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_depth;
"""
    + _NOISE
    + """
float lip_profile(float x, float hw) { return sqrt(clamp(1.0 - (x / hw) * (x / hw), 0.0, 1.0)); }
float upper_lid(float q, float h, float blink) {
    float shape = clamp(1.0 - q * q, 0.0, 1.0);
    float lower = -0.55 * h * (1.0 - 0.3 * blink) * pow(shape, 0.8);
    return (1.0 - blink) * h * pow(shape, 0.6) + blink * lower;
}
float lower_lid(float q, float h, float blink) {
    return -0.55 * h * (1.0 - 0.3 * blink) * pow(clamp(1.0 - q * q, 0.0, 1.0), 0.8);
}

// Face paint on skin: returns albedo and writes specular strength / shininess overrides.
vec3 paint_face(vec3 albedo, vec3 c, inout float spec, inout float shine) {
    float x = c.x, y = c.y;
    float ex = u_eye.x, ew = u_eye.y, eh = u_eye.z, ir = u_eye.w;
    for (int k = 0; k < 2 && y > -0.04 && y < 0.08; k++) {  // eyes and brows
        float s = k == 0 ? -1.0 : 1.0;
        float blink = k == 0 ? u_eye_state.x : u_eye_state.y;
        vec2 d = vec2(x - s * ex, y);
        float q = d.x / ew;
        // Darker skin around the eye, a crease above the lid.
        albedo *= 1.0 - 0.18 * exp(-dot(d, d) / (0.03 * 0.03));
        float crease_y = eh * pow(clamp(1.0 - q * q, 0.0, 1.0), 0.5) + 0.011;
        albedo *= 1.0 - 0.3 * exp(-pow((d.y - crease_y) / 0.003, 2.0)) * step(abs(q), 1.1);
        if (abs(q) < 1.0) {
            float up = upper_lid(q, eh, blink), lo = lower_lid(q, eh, blink);
            if (d.y < up && d.y > lo) {
                vec2 g = d - u_eye_state.zw;  // iris centre offset by the gaze
                float r = length(g) / ir;
                vec3 sclera = vec3(0.78, 0.74, 0.70) * (1.0 - 0.35 * abs(q) * abs(q));
                float streak = vnoise(vec3(atan(g.y, g.x) * 6.0, r * 3.0, 0.0) + u_noise_offset);
                vec3 iris = u_iris * (0.6 + 0.8 * streak) * (1.0 - 0.5 * smoothstep(0.75, 1.0, r));
                vec3 eye = mix(iris, sclera, smoothstep(0.95, 1.05, r));
                eye = mix(vec3(0.01), eye, smoothstep(0.38, 0.46, r));
                // Shadow of the upper lid and lashes on the eyeball.
                eye *= 0.45 + 0.55 * smoothstep(0.0, 0.6 * eh, up - d.y);
                albedo = eye; spec = 0.9; shine = 120.0;
            } else if (d.y >= up && d.y < up + 0.0035 + 0.002 * (1.0 - q * q)) {
                albedo = u_brow * 0.3;  // lashes
            } else if (d.y <= lo && d.y > lo - 0.0015) {
                albedo *= 0.6;
            }
        }
        // Brows.
        float bx = s * (x - s * ex);
        float span = clamp((bx / ew - u_brow_span.x) / (u_brow_span.y - u_brow_span.x), 0.0, 1.0);
        float line = u_brow_geo.x + u_brow_geo.z * (1.0 - pow((bx - 0.25 * ew) / (1.3 * ew), 2.0));
        float half_t = 0.5 * u_brow_geo.y * (1.15 - 0.7 * span);
        float inside = smoothstep(u_brow_span.x * ew - 0.002, u_brow_span.x * ew + 0.004, bx)
                     * smoothstep(u_brow_span.y * ew + 0.002, u_brow_span.y * ew - 0.006, bx)
                     * smoothstep(half_t, half_t * 0.5, abs(y - line));
        if (inside > 0.0) {
            float hairs = 0.6 + 0.8 * vnoise(vec3(x * 900.0, y * 250.0, 3.0) + u_noise_offset);
            albedo = mix(albedo, u_brow * hairs, inside * 0.95);
        }
    }
    // Nostrils.
    for (int k = 0; k < 2 && abs(y - u_nose.x) < 0.03; k++) {
        float s = k == 0 ? -1.0 : 1.0;
        vec2 d = (vec2(x, y) - vec2(s * 0.75 * u_nose.y, u_nose.x - 0.012)) / vec2(0.0065, 0.0032);
        albedo *= 1.0 - 0.85 * smoothstep(1.0, 0.4, length(d));
    }
    // Blush on the cheeks.
    float cheeks = exp(-(pow(abs(x) - 0.072, 2.0) + pow(y + 0.065, 2.0)) / (0.035 * 0.035));
    albedo = mix(albedo, albedo * vec3(1.15, 0.8, 0.8), u_blush * cheeks);
    // Lips.
    float ym = u_mouth.x, mw = u_mouth.y;
    if (abs(y - ym) > 0.03) return albedo;
    float prof = lip_profile(x, mw);
    float bow = 1.0 - 0.2 * exp(-0.5 * pow(x / (0.12 * mw), 2.0));
    float tu = u_mouth.z * pow(prof, 0.7) * bow, tl = u_mouth.w * pow(prof, 0.9);
    float lip = y >= ym ? smoothstep(tu + 0.0015, tu - 0.0015, y - ym) : smoothstep(tl + 0.0015, tl - 0.0015, ym - y);
    lip *= step(0.02, prof);
    float lines = 0.93 + 0.07 * sin(x * 2500.0 + 3.0 * sin(y * 300.0));
    albedo = mix(albedo, u_lip * lines, lip);
    spec = mix(spec, spec * 2.5, lip);
    albedo *= 1.0 - 0.55 * exp(-pow((y - ym) / 0.0018, 2.0)) * smoothstep(0.0, 0.1, prof);
    return albedo;
}

void main() {
    float material = v_attr.x, shade = v_attr.y;
    vec3 c = v_can;
    vec3 n = normalize(v_nrm);
    vec3 view = normalize(u_cam_pos - v_pos);
    if (dot(n, view) < 0.0) n = -n;
    float spec = u_spec, shine = u_shine, ao = 1.0;
    vec3 albedo;
    if (material < 0.5) {  // skin
        vec3 q = c * 60.0 + u_noise_offset;
        albedo = u_skin * (1.0 + u_skin_noise * (fbm(q) - 0.5));
        float pores = vnoise(c * 700.0 + u_noise_offset);
        albedo *= 1.0 - 0.12 * smoothstep(0.55, 0.9, pores);
        if (u_freckles > 0.0) albedo *= 1.0 - u_freckles * 0.45 * smoothstep(0.72, 0.8, vnoise(c * 260.0 + u_noise_offset.yzx));
        spec *= 0.5 + pores;
        if (c.z > 0.0) albedo = paint_face(albedo, c, spec, shine);
        ao = shade;
    } else if (material < 1.5) {  // hair
        if (shade < 0.0) discard;
        float az = atan(c.x, c.z);
        float strands = 0.5 * vnoise(vec3(az * 90.0, c.y * 9.0, 1.0) + u_noise_offset)
                      + 0.5 * vnoise(vec3(az * 260.0, c.y * 25.0, 2.0));
        albedo = u_hair * (0.45 + 1.1 * strands);
        spec = 0.12; shine = 18.0;
        ao = 0.75 + 0.25 * smoothstep(0.0, 3.0, shade);
    } else if (material < 2.5) {  // teeth
        float gap = abs(fract(c.x / 0.016) - 0.5);
        albedo = u_teeth * (0.55 + 0.45 * smoothstep(0.5, 0.38, gap)) * (0.5 + 0.5 * smoothstep(0.011, 0.002, abs(c.y)));
        spec = 0.3; shine = 40.0;
    } else {  // mouth cavity: dark, tongue below
        albedo = mix(vec3(0.12, 0.025, 0.025), vec3(0.35, 0.09, 0.09), smoothstep(-0.1, -0.6, c.y)) * 0.5;
        ao = 0.35; spec = 0.0;
    }
    vec3 l = normalize(u_key_dir);
    vec3 fill_dir = normalize(vec3(-u_key_dir.x, 0.2, 1.0));
    float wrap = 0.15;
    vec3 diffuse = u_key_col * max(0.0, (dot(n, l) + wrap) / (1.0 + wrap))
                 + u_fill_col * max(0.0, (dot(n, fill_dir) + wrap) / (1.0 + wrap));
    vec3 ambient = u_ambient * mix(vec3(0.55, 0.5, 0.48), vec3(1.0, 1.0, 1.05), 0.5 + 0.5 * n.y);
    vec3 h = normalize(l + view);
    float sp = spec * pow(max(0.0, dot(n, h)), shine) * (shine + 8.0) / 8.0;
    vec3 color = albedo * (diffuse * mix(1.0, ao, 0.6) + ambient * ao) + sp * u_key_col * ao * 0.25;
    color = color / (1.0 + 0.2 * color);
    f_color = vec4(pow(clamp(color, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
    f_depth = vec4(v_z, 0.0, 0.0, 0.0);
}
"""
)

_BACKGROUND_VS = """
#version 330
in vec2 in_xy;
out vec2 v_uv;
void main() { v_uv = in_xy * 0.5 + 0.5; gl_Position = vec4(in_xy, 0.999, 1.0); }
"""

_BACKGROUND_FS = (
    """
#version 330
uniform vec3 u_a, u_b, u_noise_offset;
uniform float u_angle, u_texture_amount, u_scale;
in vec2 v_uv;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_depth;
"""
    + _NOISE
    + """
void main() {
    vec2 dir = vec2(cos(u_angle), sin(u_angle));
    float t = clamp(dot(v_uv - 0.5, dir) + 0.5, 0.0, 1.0);
    vec3 color = mix(u_a, u_b, t);
    float blotch = fbm(vec3(v_uv * u_scale, 0.0) + u_noise_offset) - 0.5;
    float grain = vnoise(vec3(v_uv * 180.0, 1.0) + u_noise_offset) - 0.5;
    color *= 1.0 + u_texture_amount * (1.6 * blotch + 0.4 * grain);
    f_color = vec4(pow(clamp(color, 0.0, 1.0), vec3(1.0 / 2.2)), 0.0);
    f_depth = vec4(0.0);
}
"""
)


def _noise_texture(cells: int = NOISE_CELLS, texels_per_cell: int = 4) -> np.ndarray:
    """Tileable value noise (cells * texels_per_cell)^2 in [0, 255]: a random lattice, cubic-interpolated.

    Procedural noise read from a texture costs one filtered lookup instead of eight hashes per call, which
    matters on a software rasterizer.
    """
    lattice = np.random.default_rng(0).random((cells, cells))
    noise = zoom(lattice, texels_per_cell, order=3, mode="grid-wrap")
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return np.round(noise * 255).astype(np.uint8)


def create_context():
    """A headless OpenGL 3.3 context on EGL; raises ``RuntimeError`` with the reason if there is none."""
    import moderngl

    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # moderngl raises plain Exception subclasses for missing EGL / drivers
        raise RuntimeError(f"no headless OpenGL (EGL) context available: {exc}") from exc


def _framebuffer(ctx, resolution: int):
    """Offscreen target: colour (RGBA8, alpha = head coverage), camera-space z (float) and a depth buffer."""
    size = (resolution, resolution)
    return ctx.framebuffer(
        color_attachments=[ctx.renderbuffer(size, 4), ctx.renderbuffer(size, 1, dtype="f4")],
        depth_attachment=ctx.depth_renderbuffer(size),
    )


def _read_framebuffer(fbo, resolution: int) -> Tuple[np.ndarray, np.ndarray]:
    """Colour (H, W, 4) uint8 and depth (H, W) float32 of a :func:`_framebuffer`, row 0 at the top."""
    color = np.frombuffer(fbo.read(components=4, attachment=0), np.uint8).reshape(resolution, resolution, 4)
    depth = np.frombuffer(fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(resolution, resolution)
    return color[::-1], depth[::-1]  # GL rows start at the bottom


class Rasterizer:
    """Renders :class:`~.head.HeadModel` vertices of one identity at a time.

    Args:
        resolution: output frames are (resolution, resolution).
        samples: multisample count for anti-aliasing.
    """

    def __init__(self, resolution: int = 256):
        import moderngl

        self.ctx = create_context()
        self.resolution = resolution
        self._fbo = _framebuffer(self.ctx, resolution)
        # Outward faces wind counter-clockwise on screen (the y flip of the projection included).
        self.ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self._head_prog = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self._bg_prog = self.ctx.program(vertex_shader=_BACKGROUND_VS, fragment_shader=_BACKGROUND_FS)
        quad = np.array([-1, -1, 3, -1, -1, 3], dtype="f4")  # one triangle covering the screen
        self._bg_vao = self.ctx.vertex_array(self._bg_prog, [(self.ctx.buffer(quad.tobytes()), "2f", "in_xy")])
        noise = _noise_texture()
        self._noise = self.ctx.texture(noise.shape[::-1], 1, noise.tobytes())
        self._noise.repeat_x = self._noise.repeat_y = True
        self._noise.build_mipmaps()
        self._noise.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self._noise.use(location=0)
        for prog in (self._head_prog, self._bg_prog):
            prog["u_noise"].value = 0
        self._head_vao = None
        self._vbo = None
        self._background = np.zeros((resolution, resolution, 3), np.uint8)

    def set_person(self, identity: Person, triangles: np.ndarray, num_vertices: int) -> None:
        """Upload the identity's appearance uniforms and its fixed mesh topology."""
        p = identity
        if self._head_vao is not None:
            self._head_vao.release()
            self._vbo.release()
            self._ibo.release()
        self._vbo = self.ctx.buffer(reserve=num_vertices * VERTEX_FLOATS * 4, dynamic=True)
        self._ibo = self.ctx.buffer(np.ascontiguousarray(triangles, dtype="i4").tobytes())
        self._head_vao = self.ctx.vertex_array(
            self._head_prog, [(self._vbo, "3f 3f 3f 2f", "in_pos", "in_nrm", "in_can", "in_attr")], self._ibo
        )
        uniforms = {
            "u_focal": FOCAL,
            "u_key_dir": p.key_dir,
            "u_key_col": p.key_col,
            "u_fill_col": p.fill_col,
            "u_noise_offset": p.noise_offset,
            "u_ambient": p.ambient,
            "u_spec": p.spec,
            "u_shine": p.shininess,
            "u_skin": p.skin,
            "u_lip": p.lip,
            "u_hair": p.hair,
            "u_brow": p.brow,
            "u_iris": p.iris,
            "u_teeth": p.teeth,
            "u_skin_noise": p.skin_noise,
            "u_freckles": p.freckles,
            "u_blush": p.blush,
            "u_eye": (p.eye_x, p.eye_w, p.eye_h, p.iris_r),
            "u_mouth": (p.mouth_y, p.mouth_w, p.lip_upper, p.lip_lower),
            "u_nose": (-p.nose_len, p.nose_w),
            "u_brow_geo": (p.brow_y, p.brow_thick, p.brow_arch),
            "u_brow_span": BROW_SPAN,
        }
        self._set(self._head_prog, uniforms)
        self._set(
            self._bg_prog,
            {
                "u_a": p.bg_a,
                "u_b": p.bg_b,
                "u_angle": p.bg_angle,
                "u_texture_amount": p.bg_noise,
                "u_scale": p.bg_scale,
                "u_noise_offset": p.noise_offset,
            },
        )
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._bg_vao.render()
        self._background = self._read()[0][..., :3].copy()

    @staticmethod
    def _set(prog, values) -> None:
        for name, value in values.items():
            if name in prog:  # the GLSL compiler drops unused uniforms
                prog[name].value = value

    def render(self, vertices: np.ndarray, cam2world: np.ndarray, state: FaceState) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one frame.

        Args:
            vertices: (N, VERTEX_FLOATS) world-space vertices from ``HeadModel.vertices``.
            cam2world: (4, 4) OpenCV camera-to-world matrix.
            state: the frame's face state (eyelids and gaze are painted by the shader).

        Returns:
            rgb (H, W, 3) uint8, mask (H, W) uint8 (255 = head), depth (H, W) float32 camera-space z (0 = empty).
        """
        world2cam = np.linalg.inv(np.asarray(cam2world, dtype=np.float64))
        self._head_prog["u_world2cam"].write(world2cam.T.astype("f4").tobytes())  # GLSL matrices are column-major
        self._set(
            self._head_prog,
            {
                "u_cam_pos": tuple(np.asarray(cam2world, dtype=np.float64)[:3, 3]),
                "u_eye_state": (state.blink_r, state.blink_l, state.gaze[0], state.gaze[1]),
            },
        )
        self._vbo.write(np.ascontiguousarray(vertices, dtype="f4").tobytes())
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._head_vao.render()
        color, depth = self._read()
        head = color[..., 3] > 127
        rgb = np.where(head[..., None], color[..., :3], self._background)
        return rgb, np.where(head, 255, 0).astype(np.uint8), np.where(head, depth, 0.0).astype(np.float32)

    def _read(self) -> Tuple[np.ndarray, np.ndarray]:
        return _read_framebuffer(self._fbo, self.resolution)


# Textured-mesh pass (semi-synthetic clips from photos, :mod:`.from_photo`). Per vertex: world position,
# texture coordinates in the photo (normalized, v down: row 0 of the uploaded image is v = 0), and
# (material, mouth_v, mouth_u). Materials: 0 face (the photo), 1 backdrop card (the inpainted photo; not part
# of the head mask, depth 0), 2 mouth interior. mouth_v runs from +1 at the upper lip through 0 at the back of
# the mouth to -1 at the lower lip, mouth_u from -1 to +1 across the mouth.
TEXTURED_VERTEX_FLOATS = 8
MATERIAL_FACE, MATERIAL_CARD, MATERIAL_MOUTH = 0.0, 1.0, 2.0

_TEXTURED_VS = (
    """
#version 330
"""
    + _PROJECT
    + """
in vec3 in_pos; in vec2 in_uv; in vec3 in_attr;
out vec2 v_uv; out vec3 v_attr; out float v_z;
void main() {
    vec4 pc = to_camera(in_pos);
    v_uv = in_uv; v_attr = in_attr; v_z = pc.z;
    gl_Position = to_clip(pc);
}
"""
)

_TEXTURED_FS = """
#version 330
uniform sampler2D u_photo, u_backdrop;
uniform float u_open;  // 0: the mouth interior shows the photo's own; 1: the painted cavity and teeth
uniform vec3 u_teeth;
in vec2 v_uv; in vec3 v_attr; in float v_z;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_depth;
void main() {
    float material = v_attr.x;
    if (material > 0.5 && material < 1.5) {
        // The card is a layer behind the face whatever its geometry: its depth is squeezed into [0.9, 0.99],
        // beyond any face fragment (camera z under 3.5 maps below 0.9), keeping its own ordering.
        gl_FragDepth = 0.9 + 0.09 * gl_FragCoord.z;
        f_color = vec4(texture(u_backdrop, v_uv).rgb, 0.0);
        f_depth = vec4(0.0);
        return;
    }
    gl_FragDepth = gl_FragCoord.z;
    vec3 color = texture(u_photo, v_uv).rgb;
    if (material > 1.5) {
        float mv = v_attr.y, mu = v_attr.z;
        // Dark cavity, a little redder (the tongue) towards the lower lip.
        vec3 cavity = mix(vec3(0.05, 0.012, 0.012), vec3(0.25, 0.07, 0.07), smoothstep(0.0, -0.8, mv));
        float gap = abs(fract(mu * 3.2 + 0.5) - 0.5);
        vec3 teeth = u_teeth * (0.65 + 0.35 * smoothstep(0.5, 0.4, gap)) * (1.0 - 0.55 * mu * mu);
        cavity = mix(cavity, teeth, smoothstep(0.6, 0.66, mv));  // upper teeth just inside the upper lip
        cavity = mix(cavity, teeth * 0.7, smoothstep(-0.8, -0.88, mv));  // edge of the lower teeth
        color = mix(color, cavity, u_open);
    }
    f_color = vec4(color, 1.0);
    f_depth = vec4(v_z, 0.0, 0.0, 0.0);
}
"""


class TexturedRasterizer:
    """Draws one textured mesh (a fitted photo, see :mod:`.from_photo`) with the same camera model, framebuffer
    and outputs as :class:`Rasterizer`. Textures are sampled bilinearly and written without any shading, so a
    mesh seen from the camera it was lifted from reproduces its photo.

    Args:
        resolution: output frames are (resolution, resolution).
    """

    def __init__(self, resolution: int = 256):
        import moderngl

        self.ctx = create_context()
        self.resolution = resolution
        self._fbo = _framebuffer(self.ctx, resolution)
        self.ctx.enable(moderngl.DEPTH_TEST)  # no culling: the mesh is an open sheet seen from the front
        self._prog = self.ctx.program(vertex_shader=_TEXTURED_VS, fragment_shader=_TEXTURED_FS)
        self._prog["u_focal"].value = FOCAL
        self._vao = self._vbo = self._ibo = None
        self._textures = []

    def set_mesh(self, triangles: np.ndarray, num_vertices: int, photo: np.ndarray, backdrop: np.ndarray, teeth: Tuple[float, float, float]) -> None:
        """Upload the topology (T, 3), the photo and backdrop textures (H, W, 3) uint8 and the teeth colour."""
        import moderngl

        for resource in (self._vao, self._vbo, self._ibo, *self._textures):
            if resource is not None:
                resource.release()
        self._vbo = self.ctx.buffer(reserve=num_vertices * TEXTURED_VERTEX_FLOATS * 4, dynamic=True)
        self._ibo = self.ctx.buffer(np.ascontiguousarray(triangles, dtype="i4").tobytes())
        self._vao = self.ctx.vertex_array(self._prog, [(self._vbo, "3f 2f 3f", "in_pos", "in_uv", "in_attr")], self._ibo)
        self._textures = []
        for unit, (name, image) in enumerate((("u_photo", photo), ("u_backdrop", backdrop))):
            image = np.ascontiguousarray(image, dtype=np.uint8)
            texture = self.ctx.texture((image.shape[1], image.shape[0]), 3, image.tobytes())
            texture.repeat_x = texture.repeat_y = False  # clamp: the card reaches past the photo's edges
            texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            texture.use(location=unit)
            self._prog[name].value = unit
            self._textures.append(texture)
        self._prog["u_teeth"].value = tuple(float(c) for c in teeth)

    def render(self, vertices: np.ndarray, cam2world: np.ndarray, mouth_open: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one frame.

        Args:
            vertices: (N, TEXTURED_VERTEX_FLOATS) world position, texture coordinates, attributes.
            cam2world: (4, 4) OpenCV camera-to-world matrix.
            mouth_open: 0 shows the photo's own mouth interior, 1 the painted cavity and teeth.

        Returns:
            rgb (H, W, 3) uint8, mask (H, W) uint8 (255 = face or mouth), depth (H, W) float32 camera-space z
            of the face (0 elsewhere).
        """
        for unit, texture in enumerate(self._textures):
            texture.use(location=unit)
        world2cam = np.linalg.inv(np.asarray(cam2world, dtype=np.float64))
        self._prog["u_world2cam"].write(world2cam.T.astype("f4").tobytes())  # GLSL matrices are column-major
        self._prog["u_open"].value = float(np.clip(mouth_open, 0.0, 1.0))
        self._vbo.write(np.ascontiguousarray(vertices, dtype="f4").tobytes())
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._vao.render()
        color, depth = _read_framebuffer(self._fbo, self.resolution)
        face = color[..., 3] > 127
        return color[..., :3].copy(), np.where(face, 255, 0).astype(np.uint8), np.where(face, depth, 0.0).astype(np.float32)


_Kind = TypeVar("_Kind", Rasterizer, TexturedRasterizer)
_PROCESS_RASTERIZERS: Dict[type, object] = {}


def process_rasterizer(kind: Type[_Kind], resolution: int) -> _Kind:
    """The process's rasterizer of this kind (one OpenGL context each per process, made on first use and made
    again when the resolution changes)."""
    raster = _PROCESS_RASTERIZERS.get(kind)
    if raster is None or raster.resolution != resolution:
        raster = _PROCESS_RASTERIZERS[kind] = kind(resolution)
    return raster
