"""Each method added through the registry trains every agent, and the SB3 callback, to the end."""

import pytest
import torch
from conftest import small_dqn_args, small_ppo_args, small_sac_args, small_sb3_sac

from agents import dqn, ppo, sac
from plasticity.methods import PARTS, PartKind

# settings under which each method acts within 200 updates
ACTING = {
    "cbp": {"cbp_maturity": 20, "cbp_replacement_rate": 0.05},
    "injection": {"injection_at": [160]},
    "dash": {"dash_at": [160]},
    "muon": {},
    "trac": {},
    "kron": {},
    "nap": {},
    "snr": {"snr_tau_init": 64},
    "c_chain": {"c_chain_start": 50, "c_chain_window": 100},
    "er": {"er_every": 20},
    "er_l2": {"er_every": 20},
}
ARCHITECTURE = {"nap": {"layer_norm": True}}
"""what a method needs of the agents' networks"""
OPTIMIZERS = [name for name in ACTING if name in PARTS and PARTS[name].kind is PartKind.OPTIMIZER]


def configured(args, method):
    for key, value in ACTING[method].items():
        setattr(args.plasticity, key, value)
    for key, value in ARCHITECTURE.get(method, {}).items():
        setattr(args, key, value)
    return args


UNCOUNTED = {"muon", "trac", "kron", "nap", "c_chain", "er", "er_l2"}
"""methods that report no intervention to count (optimizers, a projection, a penalty, a
regularizer's ascent step): for them a run that finished, with finite losses, is the check"""
PENALTIES = [name for name in ACTING if name in PARTS and PARTS[name].kind is PartKind.PENALTY]


def acted(summary, network, method) -> bool:
    if method in UNCOUNTED:
        return True
    return summary["interventions_by_method"][network].get(method, 0) > 0


@pytest.mark.parametrize("method", ACTING)
def test_sac_trains_200_updates_with_the_method_on_both_networks(tmp_path, method):
    args = configured(small_sac_args(tmp_path, method=method, checkpoint_every=0), method)
    summary = sac.main(args)  # a non-finite loss would stop the run with an error
    assert summary["status"] == "finished" and summary["total_timesteps"] == 300
    assert acted(summary, "actor", method) and acted(summary, "critic", method)


@pytest.mark.parametrize("method", ACTING)
def test_sac_takes_the_method_on_the_actor_alone(tmp_path, method):
    args = configured(small_sac_args(tmp_path, actor_method=method, checkpoint_every=0), method)
    summary = sac.main(args)
    assert acted(summary, "actor", method) and not summary["interventions"]["critic"]


@pytest.mark.parametrize("method", ACTING)
def test_dqn_trains_200_updates_with_the_method(tmp_path, method):
    args = configured(small_dqn_args(tmp_path, method=method, total_timesteps=500), method)
    summary = dqn.main(args)
    assert summary["status"] == "finished" and acted(summary, "q", method)


@pytest.mark.parametrize("method", ACTING)
def test_ppo_trains_200_updates_with_the_method_on_the_critic_alone(tmp_path, method):
    # 5 iterations of 64 steps, 4 minibatches × 10 epochs each: 200 updates per network
    args = small_ppo_args(
        tmp_path,
        layer_norm=method in ARCHITECTURE,
        critic_method=method,
        total_timesteps=320,
        num_minibatches=4,
        update_epochs=10,
        checkpoint_every=0,
    )
    args.plasticity.cbp_maturity = 20  # ages count minibatch updates
    args.plasticity.cbp_replacement_rate = 0.05
    args.plasticity.injection_at = args.plasticity.dash_at = [128]
    summary = ppo.main(args)
    assert summary["status"] == "finished"
    # snr resets units that stopped firing (ReLU's zeros): PPO's tanh units have no such state
    assert acted(summary, "critic", method) or method == "snr"
    assert not summary["interventions"]["actor"]


EVERY_UPDATE = [name for name, part in PARTS.items() if part.every_update]


@pytest.mark.parametrize("method", EVERY_UPDATE)
def test_ppo_applies_the_rules_of_every_update_after_each_minibatch(tmp_path, method, monkeypatch):
    # 2 iterations of 64 steps, 4 minibatches × 3 epochs each: 24 updates per network; a
    # scheduled intervention (FIRE) is asked once per iteration
    calls = {method: [], "fire": []}
    for name in calls:
        part = PARTS[name]
        original = part.after_update

        def counted(self, step, inputs, name=name, original=original):
            calls[name].append(step)
            return original(self, step, inputs)

        monkeypatch.setattr(part, "after_update", counted)
    args = small_ppo_args(
        tmp_path,
        layer_norm=method in ARCHITECTURE,
        critic_method=f"{method}+fire",
        total_timesteps=128,
        num_minibatches=4,
        update_epochs=3,
        checkpoint_every=0,
    )
    args.plasticity.fire_every = 0
    summary = ppo.main(args)
    assert summary["status"] == "finished"
    # each call gets the env step of its iteration (64 steps each)
    assert calls[method] == [64] * 12 + [128] * 12
    assert calls["fire"] == [64]  # not at the run's last step


@pytest.mark.parametrize(
    "method",
    [name for name in ACTING if name not in (*OPTIMIZERS, *PENALTIES, *ARCHITECTURE, *UNCOUNTED)],
)
def test_the_sb3_callback_applies_the_method(method):
    from plasticity.sb3 import PlasticityCallback

    model = small_sb3_sac()
    callback = PlasticityCallback(method, **ACTING[method])
    model.learn(200, callback=callback)
    assert callback.interventions > 0
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


@pytest.mark.parametrize("method", OPTIMIZERS)
def test_the_sb3_callback_refuses_an_optimizer_it_cannot_build(method):
    from plasticity.sb3 import PlasticityCallback

    wanted = PARTS[method].optimizer_class
    refusal = f"needs {wanted.__name__} optimizers" if wanted else "builds its own optimizer"
    with pytest.raises(ValueError, match=f"method '{method}' {refusal}"):
        small_sb3_sac().learn(10, callback=PlasticityCallback(method))


def test_the_sb3_callback_takes_kron_on_a_model_built_with_it():
    from plasticity.kron import Kron
    from plasticity.sb3 import PlasticityCallback

    model = small_sb3_sac(optimizer_class=Kron)
    model.learn(100, callback=PlasticityCallback("kron+redo", redo_every=60))
    for optimizer in (model.actor.optimizer, model.critic.optimizer):
        assert isinstance(optimizer, Kron) and optimizer.state  # it took SAC's steps
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


def test_the_sb3_callback_refuses_nap_on_a_network_without_normalization():
    from plasticity.sb3 import PlasticityCallback

    with pytest.raises(ValueError, match="has no normalization layer"):
        small_sb3_sac().learn(10, callback=PlasticityCallback("nap"))


@pytest.mark.parametrize("method", PENALTIES)
def test_the_sb3_callback_refuses_a_penalty(method):
    from plasticity.sb3 import PlasticityCallback

    with pytest.raises(ValueError, match=f"{method} must enter the loss"):
        PlasticityCallback(method)
