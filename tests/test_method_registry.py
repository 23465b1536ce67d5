"""The method registry: parts say what they are; a part registered here works everywhere."""

import copy
import io

import pytest
import torch
from conftest import mlp, normalized_mlp

import train
from plasticity import InterventionReport, MethodConfig, PartKind, ScheduledIntervention
from plasticity import methods as registry
from plasticity.methods import METHODS, make_method, method_names, register


class ZeroBiases(ScheduledIntervention):
    """A test part: zeroes every bias of the network, on ReDo's period."""

    name = "zero_biases"
    every = "redo_every"

    def intervene(self, inputs):
        zeroed = {}
        with torch.no_grad():
            for name, param in self.handle.network.named_parameters():
                if name.endswith("bias"):
                    param.zero_()
                    zeroed[name] = 1.0
        return InterventionReport(self.name, {"all": {"biases": float(len(zeroed))}})


@pytest.fixture
def zero_biases():
    register(ZeroBiases)
    yield ZeroBiases.name
    del registry.PARTS[ZeroBiases.name]


def test_a_registered_part_is_a_method_by_name(zero_biases):
    assert zero_biases in method_names() and zero_biases not in METHODS
    net = mlp()
    handle = make_method(f"{zero_biases}+adamo", redo_every=5).attach(net, lr=1e-3)
    assert [r.method for r in handle.after_update(5)] == [zero_biases]
    assert all((p == 0).all() for n, p in net.named_parameters() if n.endswith("bias"))
    assert handle.interventions_by_method == {zero_biases: 1}


def test_a_registered_part_runs_through_train_py(zero_biases, tmp_path):
    flags = ["--env", "CartPole-v1", "--total-timesteps", "300", "--learning-starts", "100"]
    flags += ["--eval-every", "0", "--eval-episodes", "1", "--checkpoint-every", "0"]
    summary = train.main(
        ["--agent", "dqn", *flags, "--runs-dir", str(tmp_path), "--device", "cpu"]
        + ["--method", zero_biases, "--redo-every", "100"]
    )
    assert summary["interventions_by_method"]["q"][zero_biases] >= 1


def test_a_registered_part_runs_through_the_sb3_callback(zero_biases):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import DQN

    from envs import make_env
    from plasticity.sb3 import PlasticityCallback

    model = DQN("MlpPolicy", make_env("CartPole-v1"), learning_starts=50, seed=0, device="cpu")
    callback = PlasticityCallback(zero_biases, redo_every=100)
    model.learn(250, callback=callback)
    assert callback.interventions == 2


def test_registering_refuses_clashing_names_and_unknown_settings():
    with pytest.raises(ValueError, match="'fire' exists already"):
        register(type("Again", (ZeroBiases,), {"name": "fire"}))
    with pytest.raises(ValueError, match="'fire_evry' is not a MethodConfig field"):
        register(type("Typo", (ZeroBiases,), {"name": "typo", "settings": {"fire_evry": None}}))
    assert "typo" not in method_names()


def test_parts_classify_themselves():
    def names(test):
        return {name for name, part in registry.PARTS.items() if test(part)}

    assert names(lambda p: p.kind is PartKind.PENALTY) >= {
        "isometry",
        "l2_init",
        "l2",
        "parseval",
        "spectral",
    }
    assert names(lambda p: p.rewrites_network) == {"fire", "reset", "shrink_perturb"}
    assert "adamo" in names(lambda p: p.kind is PartKind.OPTIMIZER)


def test_every_setting_belongs_to_a_part_or_the_handle():
    claimed = set(registry.setting_checks())
    assert {f.name for f in registry.dataclasses.fields(MethodConfig)} == claimed


@pytest.mark.parametrize("name", METHODS)
def test_handle_state_loads_with_weights_only(name):
    network = normalized_mlp if name == "nap" else mlp  # nap projects a normalized network
    net = network()
    handle = make_method(name, fire_every=2, reset_every=2, redo_every=2, er_every=2).attach(
        net, lr=1e-3, targets=[copy.deepcopy(net)]
    )
    x = torch.randn(16, 8)
    for step in (1, 2):
        loss = net(x).pow(2).mean() + handle.penalty()
        handle.optimizer.zero_grad()
        loss.backward()
        handle.optimizer.step()
        handle.after_update(step, inputs=x)
    buffer = io.BytesIO()
    torch.save(handle.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    again = make_method(name).attach(network(), lr=1e-3)
    again.load_state_dict(state)
    assert again.step == 2 and again.interventions == handle.interventions
