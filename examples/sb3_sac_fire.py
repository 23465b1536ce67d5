"""Stable-Baselines3 SAC with AdamO and FIRE on the H1 walk task, with an evaluation video.

    python examples/sb3_sac_fire.py                      # 200k steps, FIRE every 100k
    python examples/sb3_sac_fire.py --env humanoid_cycle --switch-every 100000
    python examples/sb3_sac_fire.py --total-timesteps 2000 --video-length 200   # a smoke run

Logs go to ``runs/sb3_sac_fire`` (TensorBoard: SB3's losses plus ``plasticity/*``), the video
of a deterministic episode to ``videos/sb3_sac_fire/``.
"""

from __future__ import annotations

import argparse

import torch
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecVideoRecorder

from envs import make_env
from plasticity.sb3 import PlasticityCallback, adamo_policy_kwargs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="humanoid_walk")
    parser.add_argument("--switch-every", type=int, help="env steps per task of a cycle env")
    parser.add_argument("--total-timesteps", type=int, default=200_000)
    parser.add_argument("--fire-every", type=int, default=100_000)
    parser.add_argument("--video-length", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small networks on a few busy cores run several "
        "times faster on one thread than on one per core)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    env = make_env(args.env, seed=0, switch_every=args.switch_every)
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=min(5_000, args.total_timesteps // 2),
        policy_kwargs={"net_arch": [256, 256], **adamo_policy_kwargs(iso_coef=1e-3)},
        tensorboard_log="runs/sb3_sac_fire",
        device=args.device,
        seed=0,
        verbose=1,  # SB3's table of losses and returns every 4 episodes
    )
    callback = PlasticityCallback(
        "fire+adamo", fire_every=args.fire_every, metrics_every=5_000, verbose=1
    )
    model.learn(args.total_timesteps, callback=callback)
    print(f"FIRE interventions: {callback.interventions}")

    # A deterministic evaluation episode, recorded with SB3's VecVideoRecorder.
    eval_env = DummyVecEnv(
        [
            lambda: make_env(
                args.env, seed=1, render_mode="rgb_array", switch_every=args.switch_every
            )
        ]
    )
    eval_env = VecVideoRecorder(
        eval_env,
        "videos/sb3_sac_fire",
        record_video_trigger=lambda step: step == 0,
        video_length=args.video_length,
        name_prefix="eval",
    )
    obs = eval_env.reset()
    total = 0.0
    for _ in range(args.video_length):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, done, _ = eval_env.step(action)
        total += float(reward[0])
        if done[0]:
            break
    eval_env.close()
    print(f"evaluation return {total:.1f}; video in videos/sb3_sac_fire/")


if __name__ == "__main__":
    main()
