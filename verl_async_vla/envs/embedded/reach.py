"""Embedded default task: language-conditioned colour reaching on a MuJoCo table (no downloads).

A sphere end-effector, driven by two position actuators, moves over a table with three coloured cubes (free bodies
that it can push). The instruction names one cube; the cube positions are visible only in the top-down camera, never
in the proprio state, so a policy that ignores the instruction or the image succeeds at chance (about 1/3).
`env.reach.cubes` (3-5) sets how many cubes the table holds: `env=embedded_reach_hard` has 5, a harder variant
(chance lower, a denser table to read) for the off-policy ablation.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless software/GPU rendering; must precede `import mujoco`

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from verl_async_vla.envs.base import EnvShard, EnvSpec, PerEnvRngs, ShardObs, ShardStep  # noqa: E402

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.1),
    "blue": (0.1, 0.2, 0.95),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.6, 0.1, 0.75),
}
MIN_CUBES = 3  # the first `cubes` colours are on the table
TEMPLATES = ("reach the {} cube", "touch the {} block", "move to the {} cube", "go to the {} block")
WORKSPACE = 0.25  # objects and the end-effector start in [-WORKSPACE, WORKSPACE]^2 (metres)
LIMIT = 0.32  # end-effector target is clipped to this box (table half-size 0.4)
MAX_DELTA = 0.04  # metres of actuator-target motion per unit action per control step
SUCCESS_DIST = 0.07  # sphere radius 0.025 + cube half-size 0.03 + slack: touching counts
MIN_SEPARATION = 0.12
PHYSICS_SUBSTEPS = 5  # 5 x 10 ms = one 50 ms control step
SHAPING_SCALE = 5.0  # reward per metre of progress towards the named cube
SUCCESS_BONUS = 1.0  # reward of the control step that touches it


def _scene_xml(image_size: int, colours: list[str]) -> str:
    cubes = "\n".join(
        f'<body name="cube_{name}" pos="0 0 0.03"><freejoint/>'
        f'<geom type="box" size=".03 .03 .03" rgba="{r} {g} {b} 1" mass=".1" friction="0.6 0.01 0.001"/></body>'
        for name, (r, g, b) in ((c, COLOURS[c]) for c in colours)
    )
    return f"""
<mujoco model="vla_colour_reach">
  <option timestep="0.01"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{image_size}" offheight="{image_size}"/>
    <headlight ambient=".6 .6 .6" diffuse=".4 .4 .4" specular="0 0 0"/>
  </visual>
  <worldbody>
    <geom name="table" type="plane" size=".4 .4 .01" rgba=".55 .47 .38 1"/>
    <camera name="agentview" pos="0 0 0.95" fovy="42"/>
    <body name="ee" pos="0 0 0.03">
      <joint name="ee_x" type="slide" axis="1 0 0" damping="12"/>
      <joint name="ee_y" type="slide" axis="0 1 0" damping="12"/>
      <geom type="sphere" size=".025" rgba=".95 .95 .95 1" mass=".2"/>
    </body>
    {cubes}
  </worldbody>
  <actuator>
    <position name="act_x" joint="ee_x" kp="200"/>
    <position name="act_y" joint="ee_y" kp="200"/>
  </actuator>
</mujoco>"""


class _ReachEnv:
    """One simulator instance; the shard owns several and never rebuilds them between episodes."""

    def __init__(self, image_size: int, cubes: int = MIN_CUBES):
        self.colours = list(COLOURS)[:cubes]
        self.model = mujoco.MjModel.from_xml_string(_scene_xml(image_size, self.colours))
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, image_size, image_size)
        self.cube_qpos = {
            name: self.model.jnt_qposadr[self.model.body(f"cube_{name}").jntadr[0]] for name in self.colours
        }
        self.target = "red"
        self.instruction = ""
        self.steps = 0
        self.prev_dist = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        mujoco.mj_resetData(self.model, self.data)
        points = _sample_separated(rng, len(self.colours) + 1)
        for adr, xy in zip(self.cube_qpos.values(), points[1:], strict=True):
            self.data.qpos[adr : adr + 3] = (xy[0], xy[1], 0.03)
            self.data.qpos[adr + 3 : adr + 7] = (1.0, 0.0, 0.0, 0.0)
        self.data.qpos[0:2] = points[0]
        self.data.ctrl[:] = points[0]
        mujoco.mj_forward(self.model, self.data)
        self.target = str(rng.choice(self.colours))
        self.instruction = str(rng.choice(TEMPLATES)).format(self.target)
        self.steps = 0
        self.prev_dist = self.distance()

    def ee_xy(self) -> np.ndarray:
        return self.data.qpos[0:2].copy()

    def target_xy(self) -> np.ndarray:
        adr = self.cube_qpos[self.target]
        return self.data.qpos[adr : adr + 2].copy()

    def distance(self) -> float:
        return float(np.linalg.norm(self.ee_xy() - self.target_xy()))

    def control_step(self, action: np.ndarray) -> tuple[float, bool]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.data.ctrl[:] = np.clip(self.data.ctrl + a * MAX_DELTA, -LIMIT, LIMIT)
        mujoco.mj_step(self.model, self.data, nstep=PHYSICS_SUBSTEPS)
        self.steps += 1
        dist = self.distance()
        success = dist < SUCCESS_DIST
        # Potential-based shaping (Ng et al. 1999): progress towards the named cube, plus a success bonus.
        reward = SHAPING_SCALE * (self.prev_dist - dist) + (SUCCESS_BONUS if success else 0.0)
        self.prev_dist = dist
        return reward, success

    def state(self) -> np.ndarray:
        return np.concatenate([self.ee_xy() / LIMIT, self.data.qvel[0:2] * 0.5]).astype(np.float32)

    def render(self) -> np.ndarray:
        self.renderer.update_scene(self.data, camera="agentview")
        return self.renderer.render()

    def close(self) -> None:
        self.renderer.close()


def _sample_separated(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rejection-sample n points in the workspace at least MIN_SEPARATION apart."""
    while True:
        pts = rng.uniform(-WORKSPACE, WORKSPACE, size=(n, 2))
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(n)
        if d.min() >= MIN_SEPARATION:
            return pts


class EmbeddedReachShard(PerEnvRngs, EnvShard):
    """`num_envs` colour-reach envs; episode layouts come from a per-env seeded generator."""

    def __init__(self, num_envs: int, image_size: int = 64, max_episode_steps: int = 40, seed: int = 0,
                 cubes: int = MIN_CUBES):  # fmt: skip
        if num_envs < 1:
            raise ValueError(f"env.num_envs_per_worker must be >= 1, got {num_envs}")
        if not MIN_CUBES <= cubes <= len(COLOURS):
            raise ValueError(f"env.reach.cubes={cubes} must be in [{MIN_CUBES}, {len(COLOURS)}] (one per colour: "
                             f"{', '.join(COLOURS)}).")  # fmt: skip
        if image_size < 16:
            raise ValueError(f"env.image_size must be >= 16 pixels, got {image_size}")
        self.num_envs = num_envs
        self.spec = EnvSpec(
            (image_size, image_size, 3), state_dim=4, action_dim=2, max_episode_steps=max_episode_steps
        )
        self.envs = [_ReachEnv(image_size, cubes) for _ in range(num_envs)]
        self.rngs = [np.random.default_rng([seed, i]) for i in range(num_envs)]
        self.done = np.ones(num_envs, dtype=bool)

    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        env_ids = np.asarray(env_ids, dtype=np.int64)
        if seeds is not None and len(seeds) != len(env_ids):
            raise ValueError(
                f"reset got {len(seeds)} seeds for {len(env_ids)} envs; pass one seed per env id"
            )
        for k, i in enumerate(env_ids):
            rng = self.rngs[i] if seeds is None else np.random.default_rng(int(seeds[k]))
            self.envs[i].reset(rng)
            self.done[i] = False
        return self._observe(env_ids)

    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        env_ids = np.asarray(env_ids, dtype=np.int64)
        self.check_actions(env_ids, actions)
        n = len(env_ids)
        reward = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        env_steps = np.zeros(n, np.int64)
        for k, i in enumerate(env_ids):
            if self.done[i]:
                raise RuntimeError(f"env {i} stepped after its episode ended; call reset([{i}]) first")
            env = self.envs[i]
            for a in actions[k]:
                r, success = env.control_step(a)
                reward[k] += r
                env_steps[k] += 1
                if success:
                    terminated[k] = True
                    break
                if env.steps >= self.spec.max_episode_steps:
                    truncated[k] = True
                    break
            self.done[i] = terminated[k] or truncated[k]
        return ShardStep(self._observe(env_ids), reward, terminated, truncated, terminated.copy(), env_steps)

    def _observe(self, env_ids: np.ndarray) -> ShardObs:
        envs = [self.envs[i] for i in env_ids]
        if not envs:
            return ShardObs(
                env_ids, np.zeros((0, *self.spec.image_shape), np.uint8), np.zeros((0, 4), np.float32), []
            )
        return ShardObs(
            env_ids=env_ids,
            image=np.stack([e.render() for e in envs]),
            state=np.stack([e.state() for e in envs]),
            instruction=[e.instruction for e in envs],
        )

    def goal_distance(self, env_ids: np.ndarray) -> np.ndarray:
        """(privileged) Each env's end-effector distance to its named cube, in metres: the shaping potential."""
        return np.array([self.envs[i].distance() for i in env_ids], np.float32)

    def expert_actions(self, env_ids: np.ndarray, chunk: int, ignore_instruction: bool = False) -> np.ndarray:
        """Scripted expert (privileged: reads cube poses) for demonstrations and the task card.

        With `ignore_instruction` it always heads for the red cube: the best any instruction-blind policy can do
        is pick one cube, so its success measures chance level.
        """
        out = np.zeros((len(env_ids), chunk, 2), np.float32)
        for k, i in enumerate(env_ids):
            env = self.envs[i]
            ctrl = env.data.ctrl.copy()
            adr = env.cube_qpos["red"]
            goal = env.data.qpos[adr : adr + 2].copy() if ignore_instruction else env.target_xy()
            for t in range(chunk):
                a = np.clip((goal - ctrl) / MAX_DELTA, -1.0, 1.0)
                out[k, t] = a
                ctrl = ctrl + a * MAX_DELTA
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()
