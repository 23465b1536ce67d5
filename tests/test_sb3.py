"""Stable-Baselines3 integration: AdamO via policy_kwargs, the plasticity callback."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("stable_baselines3")
from conftest import state_is_zero  # noqa: E402
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback, CallbackList  # noqa: E402

from envs import make_env  # noqa: E402
from plasticity import AdamO, fire_, make_method  # noqa: E402
from plasticity._layers import named_layers  # noqa: E402
from plasticity.architecture import CReLU, FourierFeatures  # noqa: E402
from plasticity.kron import Kron  # noqa: E402
from plasticity.sb3 import (  # noqa: E402
    PlasticityCallback,
    adamo_policy_kwargs,
    architecture_policy,
    sb3_networks,
)

SMALL = {"net_arch": [32, 32]}


def off_policy(algo, env="Pendulum-v1", **kwargs):
    return algo(
        "MlpPolicy",
        make_env(env),
        learning_starts=50,
        batch_size=32,
        buffer_size=1000,
        policy_kwargs={**SMALL, **adamo_policy_kwargs(iso_coef=1e-3, iso_every=1)},
        seed=0,
        device="cpu",
        **kwargs,
    )


def on_policy(algo, env="CartPole-v1"):
    return algo(
        "MlpPolicy",
        make_env(env),
        n_steps=64,
        seed=0,
        device="cpu",
        policy_kwargs={**SMALL, **adamo_policy_kwargs(iso_coef=1e-3)},
    )


def head_weights(model):
    """The output-layer weights each optimizer of ``optimizers(model)`` trains."""
    policy = model.policy
    if isinstance(model, SAC):
        return [[policy.actor.mu.weight, policy.actor.log_std.weight], critic_heads(policy)]
    if isinstance(model, TD3):
        return [[policy.actor.mu[-2].weight], critic_heads(policy)]
    if isinstance(model, DQN):
        return [[policy.q_net.q_net[-1].weight]]
    return [[policy.action_net.weight, policy.value_net.weight]]


def critic_heads(policy):
    return [q[-1].weight for q in policy.critic.q_networks]


def optimizers(model):
    if isinstance(model, (SAC, TD3)):
        return [model.actor.optimizer, model.critic.optimizer]
    return [model.policy.optimizer]


@pytest.mark.parametrize(
    "make",
    [
        lambda: off_policy(SAC),
        lambda: off_policy(TD3),
        lambda: off_policy(DQN, env="CartPole-v1", target_update_interval=50),
        lambda: on_policy(PPO),
        lambda: on_policy(A2C),
    ],
    ids=["SAC", "TD3", "DQN", "PPO", "A2C"],
)
def test_each_algorithm_learns_with_adamo_and_heads_excluded(make):
    model = make()
    callback = PlasticityCallback("adamo", networks=tuple(sb3_networks(model)))
    model.learn(200, callback=callback)
    assert model.num_timesteps >= 200
    for opt, heads in zip(optimizers(model), head_weights(model), strict=True):
        assert isinstance(opt, AdamO)
        (group,) = opt.param_groups  # SB3's one group, so that saved models load
        iso = [p for p, takes in zip(group["params"], group["iso_mask"], strict=True) if takes]
        assert iso and all(p.ndim == 2 for p in iso)
        assert not any(p is head for p in iso for head in heads)
        assert all(len(opt.state[p]) for p in group["params"])  # trained after marking
    for network in sb3_networks(model).values():
        assert all(torch.isfinite(p).all() for p in network.module.parameters())
    # ReDo and the metrics read features through the policy's own activation
    expected = torch.nn.Tanh if isinstance(model, (PPO, A2C)) else torch.nn.ReLU
    assert isinstance(callback.activation, expected)


def test_fire_on_sac_critic_resyncs_target_and_clears_state():
    model = off_policy(SAC)
    model.learn(99)
    critic = model.critic
    expected = copy.deepcopy(critic)
    fire_(expected)
    callback = PlasticityCallback("fire", fire_every=100, networks=("critic",))
    model.gradient_steps = 0  # see the intervention alone, before any further update
    model.learn(1, callback=callback, reset_num_timesteps=False)  # step 100 crosses 100
    assert callback.interventions == 1
    for p, q in zip(critic.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p, q)  # FIRE'd weights, untouched biases
    for key, value in critic.state_dict().items():
        assert torch.equal(value, model.critic_target.state_dict()[key])
    for layer in (critic.qf0[0], critic.qf1[2]):
        assert state_is_zero(critic.optimizer, layer.weight)


@pytest.mark.parametrize("mode", ["network", "touched"])
def test_fire_resets_the_critics_adam_state(mode):
    model = off_policy(SAC)
    model.learn(100)
    callback = PlasticityCallback("fire", networks=("critic",), clear_optimizer=mode)
    callback.init_callback(model)
    before = set(model.critic.optimizer.state)
    callback.handles["critic"].on_task_switch()  # FIRE now
    weights = [layer.weight for _, layer in named_layers(model.critic)]
    assert all(w in before for w in weights)
    assert all(state_is_zero(model.critic.optimizer, w) for w in weights)
    # the whole network's state by default (biases too), only the rewritten weights' else
    assert state_is_zero(model.critic.optimizer, model.critic.qf0[0].bias) == (mode == "network")


def test_callback_reacts_to_a_task_switch_of_a_cycling_env():
    env = make_env("CartPole-v1", switch_every=150, permute_observations=True)
    model = DQN(
        "MlpPolicy",
        env,
        learning_starts=50,
        buffer_size=1000,
        seed=0,
        device="cpu",
        policy_kwargs=SMALL,
    )
    callback = PlasticityCallback("fire")
    model.learn(400, callback=callback)
    assert callback._last_period >= 1
    assert callback.interventions == callback._last_period  # one FIRE per switch


def test_a_saved_model_with_adamo_loads_and_keeps_its_isometry_mask(tmp_path):
    model = off_policy(SAC)
    model.learn(100, callback=PlasticityCallback("adamo"))
    masks = [group["iso_mask"] for opt in optimizers(model) for group in opt.param_groups]
    model.save(tmp_path / "model.zip")
    loaded = SAC.load(tmp_path / "model.zip", env=make_env("Pendulum-v1"), device="cpu")
    assert [g["iso_mask"] for o in optimizers(loaded) for g in o.param_groups] == masks
    for saved, restored in zip(optimizers(model), optimizers(loaded), strict=True):
        assert isinstance(restored, AdamO)
        (before,), (after,) = saved.param_groups, restored.param_groups
        for p, q in zip(before["params"], after["params"], strict=True):
            torch.testing.assert_close(saved.state[p]["exp_avg"], restored.state[q]["exp_avg"])
    loaded.learn(50, callback=PlasticityCallback("adamo"), reset_num_timesteps=False)


def test_a_new_callback_on_a_trained_model_does_not_catch_up():
    env = make_env("CartPole-v1", switch_every=60, permute_observations=True)
    model = DQN("MlpPolicy", env, learning_starts=50, buffer_size=1000, seed=0, device="cpu")
    model.learn(130)  # two switches behind it, and past two multiples of fire_every=50
    callback = PlasticityCallback("fire", fire_every=50)
    model.learn(15, callback=callback, reset_num_timesteps=False)  # crosses neither 150 nor 180
    assert callback.interventions == 0
    model.learn(10, callback=callback, reset_num_timesteps=False)  # crosses 150
    assert callback.interventions == 1


class TinyImageEnv(gym.Env):
    """36×36 RGB frames (NatureCNN's smallest input) and one continuous action."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(action[0]), False, False, {}


def test_critic_interventions_leave_a_shared_features_extractor_alone():
    model = SAC(
        "CnnPolicy",
        TinyImageEnv(),
        buffer_size=100,
        learning_starts=10,
        batch_size=8,
        policy_kwargs={"share_features_extractor": True, "net_arch": [16]},
        device="cpu",
        seed=0,
    )
    shared = model.actor.features_extractor
    assert model.critic.features_extractor is shared
    model.learn(20)
    before = copy.deepcopy(shared.state_dict())
    head = model.critic.qf0[-1].weight.detach().clone()
    callback = PlasticityCallback("fire", networks=("critic",))
    callback.init_callback(model)
    callback.handles["critic"].on_task_switch()  # FIRE now
    for key, value in shared.state_dict().items():
        assert torch.equal(value, before[key])  # the actor's extractor: untouched
    assert not torch.equal(model.critic.qf0[-1].weight, head)


@pytest.mark.parametrize("method", ["reset", "shrink_perturb"])
def test_ppo_interventions_draw_new_weights_as_sb3_does(method):
    model = on_policy(PPO)
    model.learn(64)
    callback = PlasticityCallback(method, networks=("actor",), shrink=0.0, perturb=1.0)
    callback.init_callback(model)
    callback.handles["actor"].on_task_switch()  # the intervention, now
    head = model.policy.action_net.weight
    # orthogonal with gain 0.01: each row has norm 0.01 (PyTorch's default would be ~0.6)
    torch.testing.assert_close(head.norm(dim=1), torch.full((head.shape[0],), 0.01))
    hidden = model.policy.mlp_extractor.policy_net[0].weight
    gram = hidden @ hidden.T if hidden.shape[0] <= hidden.shape[1] else hidden.T @ hidden
    torch.testing.assert_close(gram, 2.0 * torch.eye(gram.shape[0]), atol=1e-4, rtol=0)


def test_sac_with_gsde_has_its_heads_found():
    model = off_policy(SAC, use_sde=True)
    networks = sb3_networks(model)
    assert networks["actor"].heads == ("mu.0",)  # mu is a Sequential; log_std a parameter
    model.learn(60, callback=PlasticityCallback("fire", fire_every=50))


def test_wrong_network_names_and_penalties_are_clear_errors():
    model = off_policy(SAC)
    with pytest.raises(ValueError, match="SAC has no network 'q_net'; choose from actor, critic"):
        model.learn(10, callback=PlasticityCallback("fire", networks=("q_net",)))
    with pytest.raises(ValueError, match="must enter the loss"):
        PlasticityCallback("parseval")
    with pytest.raises(ValueError, match="unknown plasticity method"):
        PlasticityCallback("fir")
    plain = SAC("MlpPolicy", make_env("Pendulum-v1"), device="cpu")
    with pytest.raises(ValueError, match="needs AdamO optimizers"):
        plain.learn(10, callback=PlasticityCallback("adamo"))


class RolloutChecker(BaseCallback):
    """At each rollout's end: do the stored log-probabilities belong to the current policy?"""

    def __init__(self):
        super().__init__()
        self.rollouts = self.consistent = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer, policy = self.model.rollout_buffer, self.model.policy
        obs = torch.as_tensor(buffer.observations.reshape(-1, *buffer.obs_shape)).float()
        actions = torch.as_tensor(buffer.actions.reshape(-1)).long()
        with torch.no_grad():
            _, log_prob, _ = policy.evaluate_actions(obs, actions)
        stored = torch.as_tensor(buffer.log_probs.reshape(-1)).float()
        self.rollouts += 1
        self.consistent += bool(torch.allclose(log_prob, stored, atol=1e-5))


def test_on_policy_interventions_never_fall_inside_a_rollout():
    model = on_policy(PPO)  # rollouts of 64 steps; FIRE every 100 falls inside the 2nd
    fire = PlasticityCallback("fire", fire_every=100)
    checker = RolloutChecker()
    model.learn(64 * 6, callback=CallbackList([fire, checker]))
    assert fire.interventions == 2 * 3  # actor and critic, after steps 100, 200 and 300
    assert checker.rollouts == 6
    assert checker.consistent == checker.rollouts  # each rollout's policy did not change


def intervention_steps(handle, recorded: list[int]):
    """Wrap ``handle.after_update`` to record the steps at which an intervention ran."""
    after_update = handle.after_update

    def recording(step, inputs=None):
        reports = after_update(step, inputs)
        if reports:
            recorded.append(step)
        return reports

    handle.after_update = recording


@pytest.mark.parametrize("algo", [SAC, PPO])
def test_callback_intervenes_at_the_steps_of_a_method_handle(algo):
    """Same settings, same env-step counter: the same intervention steps as our agents get
    (SAC: after every env step; PPO: after each rollout's update, before the next)."""
    model = off_policy(SAC) if algo is SAC else on_policy(PPO)
    callback = PlasticityCallback("fire", fire_every=90, networks=("actor",))
    callback.init_callback(model)
    from_callback: list[int] = []
    intervention_steps(callback.handles["actor"], from_callback)
    model.learn(320, callback=callback)

    handle = make_method("fire", fire_every=90).attach(torch.nn.Linear(2, 2), lr=1e-3)
    from_handle: list[int] = []
    intervention_steps(handle, from_handle)
    # our SAC calls after_update after every env step; our PPO after each rollout's update
    # (the last one is followed by no rollout, and SB3 starts none)
    n = model.num_timesteps
    for step in range(1, n + 1) if algo is SAC else range(64, n, 64):
        handle.after_update(step)
    assert from_callback == from_handle == ([90, 180, 270] if algo is SAC else [128, 192])


def test_example_runs_and_records_a_video(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "sb3_sac_fire.py"
    result = subprocess.run(
        [
            sys.executable,
            str(example),
            "--total-timesteps",
            "300",
            "--fire-every",
            "200",
            "--video-length",
            "30",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FIRE interventions: 2" in result.stdout  # at step 200, on actor and critic
    assert list((tmp_path / "videos" / "sb3_sac_fire").glob("*.mp4"))


def test_a_second_learn_counting_from_zero_gets_its_interventions_again():
    model = off_policy(SAC)
    callback = PlasticityCallback("fire", fire_every=50, networks=("critic",))
    model.learn(120, callback=callback)
    assert callback.interventions == 2  # 50, 100
    model.learn(120, callback=callback)  # reset_num_timesteps=True: counts from 0 again
    assert callback.interventions == 4


def test_the_callback_draws_no_probe_unless_an_intervention_needs_one(monkeypatch):
    model = off_policy(SAC)
    calls = []
    sample = model.replay_buffer.sample
    monkeypatch.setattr(
        model.replay_buffer, "sample", lambda *a, **k: calls.append(1) or sample(*a, **k)
    )
    model.learn(150)
    without = len(calls)
    calls.clear()
    model.learn(150, callback=PlasticityCallback("fire", fire_every=60))
    assert len(calls) == without  # FIRE needs no probe: SB3's own batches only


ARCHITECTURES = [
    (SAC, "Pendulum-v1", "crelu", CReLU, {"learning_starts": 50, "batch_size": 32}),
    (DQN, "CartPole-v1", "dff", FourierFeatures, {"learning_starts": 50, "batch_size": 32}),
    (PPO, "CartPole-v1", "crelu", CReLU, {"n_steps": 64, "batch_size": 32}),
]


def with_architecture(algo, env, activation, settings, **policy_kwargs):
    return algo(
        architecture_policy(algo),
        make_env(env),
        policy_kwargs={"net_arch": [16, 16], "layer_norm": True, "activation": activation}
        | policy_kwargs,
        seed=0,
        device="cpu",
        **settings,
    )


@pytest.mark.parametrize(
    ("algo", "env", "activation", "module", "settings"), ARCHITECTURES, ids=["SAC", "DQN", "PPO"]
)
def test_an_architecture_policy_has_layer_norm_and_the_activation_learns_and_loads(
    tmp_path, algo, env, activation, module, settings
):
    model = with_architecture(algo, env, activation, settings)
    for network in sb3_networks(model).values():
        modules = list(network.module.modules())
        mlps = [m for m in modules if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Linear)]
        assert mlps  # the actor's, each critic's, the Q-network's, each branch's
        for mlp in mlps:
            assert [type(m) for m in mlp[:6]] == [nn.Linear, nn.LayerNorm, module] * 2
        # every Linear layer but the first of each MLP reads the doubled width: 2 × 16
        firsts = {id(mlp[0]) for mlp in mlps}
        linear = [m for m in modules if isinstance(m, nn.Linear) and id(m) not in firsts]
        assert linear and all(layer.in_features == 32 for layer in linear)
    before = copy.deepcopy(model.policy.state_dict())
    model.learn(150)
    after = model.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert all(torch.isfinite(v).all() for v in after.values())
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", device="cpu")
    assert type(loaded.policy) is type(model.policy)
    for key, value in loaded.policy.state_dict().items():
        assert torch.equal(value, after[key])
    obs = model.observation_space.sample()[None]
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )


def test_nap_and_kron_reach_an_sb3_model_through_its_policy():
    model = with_architecture(
        SAC,
        "Pendulum-v1",
        "relu",
        {"learning_starts": 50, "batch_size": 32},
        optimizer_class=Kron,
    )
    callback = PlasticityCallback("nap+kron")
    model.learn(120, callback=callback)
    weight = model.actor.latent_pi[0].weight.detach()
    (nap,) = [part for part in callback.handles["actor"].parts if part.name == "nap"]
    initial = nap.norms["latent_pi.0"]
    # projected back at each env step, one update before the end of learn()
    assert float(weight.norm()) == pytest.approx(initial, rel=1e-3)
    assert "latent_pi.1" in nap.norms  # the LayerNorm's gain and offset, jointly
    assert isinstance(model.critic.optimizer, Kron)


def test_the_callback_refuses_unit_replacement_on_widening_units():
    model = with_architecture(SAC, "Pendulum-v1", "crelu", {"learning_starts": 50})
    with pytest.raises(ValueError, match="redo replaces single units, and the policy's CReLU"):
        model.learn(10, callback=PlasticityCallback("redo"))


def test_architecture_policy_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose from relu, tanh"):
        with_architecture(SAC, "Pendulum-v1", "gelu", {})
    with pytest.raises(ValueError, match="leave out activation_fn=Tanh"):
        with_architecture(SAC, "Pendulum-v1", "relu", {}, activation_fn=nn.Tanh)
    with pytest.raises(TypeError, match="TD3 has no architecture policy"):
        architecture_policy(TD3)
