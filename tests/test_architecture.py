"""--activation crelu|dff: width doubling, the functions themselves, every agent trains."""

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F
from conftest import small_dqn_args, small_ppo_args, small_sac_args
from torch import nn

from agents import dqn, ppo, sac
from agents.cli import UserError
from agents.networks import CReLU, FourierFeatures


def test_crelu_and_fourier_features_concatenate_two_views_of_each_unit():
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(CReLU()(x), torch.cat([F.relu(x), F.relu(-x)], 1))
    torch.testing.assert_close(FourierFeatures()(x), torch.cat([x.sin(), x.cos()], 1))


@pytest.mark.parametrize("activation", ["crelu", "dff"])
def test_the_next_layers_fan_in_doubles(activation):
    linear = [m for m in sac.TwinQ(5, 2, 16, activation=activation).qf1 if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(7, 16), (32, 16), (32, 1)]
    actor = sac.Actor(5, gym.spaces.Box(-1, 1, (2,)), 16, activation=activation)
    assert (actor.fc2.in_features, actor.fc_mean.in_features) == (32, 32)
    q = dqn.QNetwork((4, 10, 10), 3, activation=activation)
    convs_and_linear = [m for m in q.network if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert convs_and_linear[1].in_features == 2 * 16 * 8 * 8  # the conv's channels doubled
    assert convs_and_linear[-1].in_features == 2 * 128
    assert q(torch.zeros(2, 4, 10, 10, dtype=torch.uint8)).shape == (2, 3)
    critic = ppo.Critic(gym.spaces.Box(-1, 1, (6,)), 16, activation=activation)
    assert critic.head.in_features == 32 and critic(torch.randn(3, 6)).shape == (3,)


@pytest.mark.parametrize("activation", ["crelu", "dff"])
def test_every_agent_trains_with_the_activation(tmp_path, activation):
    for main, args in (
        (sac.main, small_sac_args(tmp_path / "sac", activation=activation, checkpoint_every=0)),
        (dqn.main, small_dqn_args(tmp_path / "dqn", activation=activation)),
        (ppo.main, small_ppo_args(tmp_path / "ppo", activation=activation, method="fire")),
    ):
        assert main(args)["status"] == "finished"


def test_unit_replacing_methods_refuse_a_doubling_activation(tmp_path):
    args = small_sac_args(tmp_path, activation="crelu", method="cbp")
    with pytest.raises(UserError, match="cbp replaces single units.*--activation crelu"):
        sac.main(args)
