"""Cheaper CPU rendering for robosuite/LIBERO envs.

On a software rasteriser most of a LIBERO step is the camera renders. Multisampling, shadows and reflections are
the expensive parts; `fast_render` turns them off and shrinks the offscreen buffer to the camera size. The images
then differ from stock LIBERO renders (no shadows, aliased edges), which matters for policies trained on stock
images (docs/libero.md), not for policies trained here.
"""

from __future__ import annotations

from typing import Any


def apply_fast_render(env: Any, width: int, height: int) -> None:
    """`env` is a LIBERO `OffScreenRenderEnv` after its first reset (the render context exists then). With
    `hard_reset=False` the model and context survive resets, so this is done once per env."""
    import mujoco

    sim = env.sim
    model = sim.model._model
    model.vis.quality.offsamples = 0
    model.vis.quality.shadowsize = 0
    model.vis.global_.offwidth = width
    model.vis.global_.offheight = height
    model.mat_reflectance[:] = 0.0
    ctx = sim._render_context_offscreen
    if ctx is None:
        raise RuntimeError(
            "apply_fast_render needs a LIBERO env that has been reset once (no render context yet)."
        )
    ctx.gl_ctx.make_current()
    ctx.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    ctx.con.free()  # the offscreen buffer is sized and multisampled at context creation: recreate it
    ctx._set_mujoco_context_and_buffers()
