"""--activation crelu|dff: width doubling, the functions themselves, every agent trains; and
the agents' own architecture: each file reads as its algorithm (few names from its siblings,
a main() that is mostly algorithm)."""

import ast
from pathlib import Path

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


AGENT_FILES = {
    name: Path(module.__file__) for name, module in (("sac", sac), ("dqn", dqn), ("ppo", ppo))
}

RUN_NAMES = {
    # the lifecycle and the run folder, checkpoints and starting from one
    "life", "Lifecycle", "Run", "run", "restore_checkpoint", "checkpoint_state",
    "learning_gate", "gate", "checkpoint", "state", "load_optimizer", "tracker",
    "EpisodeTracker", "networks", "nonfinite", "SavedNormalization",
    # settings: checks, defaults, errors, device
    "UserError", "configure", "compiler", "check", "check_settings", "with_defaults",
    "fill_unset", "with_rl_method_defaults", "method_parts", "resolved_settings",
    # instrumentation and evaluation: metrics, curvature, logging, the evaluated policy
    "intervened", "prefixed", "after_intervention", "PlasticityMonitor", "q_monitor",
    "actor_monitor", "critic_monitor", "monitor_settings", "network_metrics", "measure",
    "curvature", "q_curvature", "critic_curvature", "rng_kept", "scalars", "measuring",
    "metrics", "policy",
}  # fmt: skip
"""What runs around an algorithm rather than being it. The plasticity method's own calls
(attaching it, its penalty, ``after_update``, ``on_task_switch``) count as the algorithm: the
method is what this project trains with."""


def sibling_names(tree: ast.Module) -> list[str]:
    """Names imported from ``agents.*`` and ``envs.*``."""
    return [
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").split(".")[0] in ("agents", "envs")
        for alias in node.names
    ]


def mentioned(node: ast.AST) -> set[str]:
    return {
        n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else n.name
        for n in ast.walk(node)
        if isinstance(n, (ast.Name, ast.Attribute, ast.FunctionDef))
    }


def run_lines(statements: list[ast.stmt]) -> dict[int, bool]:
    """Each line of ``statements``: whether it belongs to the run around the algorithm. A
    simple statement is whole; a compound one by its header line(s) (a nested function named
    in RUN_NAMES whole), its body statement by statement."""
    lines: dict[int, bool] = {}
    for statement in statements:
        blocks = [getattr(statement, f, None) or [] for f in ("body", "orelse", "finalbody")]
        children = [child for block in blocks for child in block]
        if isinstance(statement, ast.FunctionDef) and statement.name in RUN_NAMES:
            lines.update(dict.fromkeys(range(statement.lineno, statement.end_lineno + 1), True))
            continue
        if not children:
            run = bool(mentioned(statement) & RUN_NAMES)
            lines.update(dict.fromkeys(range(statement.lineno, statement.end_lineno + 1), run))
            continue
        head_names = set()
        for field, value in ast.iter_fields(statement):
            if field not in ("body", "orelse", "finalbody"):
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, ast.AST):
                        head_names |= mentioned(item)
        first = min(child.lineno for child in children)
        lines.update(dict.fromkeys(range(statement.lineno, first), bool(head_names & RUN_NAMES)))
        for block in blocks:
            lines.update(run_lines(block))
    return lines


def main_lines(path: Path) -> tuple[int, dict[int, bool]]:
    """main()'s length, and its code lines (no blanks, comments, ``else:``, docstrings) with
    whether each is the run's."""
    source = path.read_text()
    text = source.splitlines()
    main = next(n for n in ast.parse(source).body if getattr(n, "name", None) == "main")
    docstrings = {
        line
        for node in ast.walk(main)
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) is not None
        for line in range(node.body[0].lineno, node.body[0].end_lineno + 1)
    }
    lines = {
        number: run
        for number, run in run_lines(main.body).items()
        if number not in docstrings
        and text[number - 1].strip() not in ("", "else:")
        and not text[number - 1].strip().startswith("#")
    }
    return main.end_lineno - main.lineno + 1, lines


@pytest.mark.parametrize("agent", sorted(AGENT_FILES))
def test_an_agent_imports_few_names_from_its_siblings(agent):
    names = sibling_names(ast.parse(AGENT_FILES[agent].read_text()))
    assert len(names) <= 10, names


@pytest.mark.parametrize("agent", sorted(AGENT_FILES))
def test_most_of_an_agents_main_is_its_algorithm(agent):
    length, lines = main_lines(AGENT_FILES[agent])
    algorithm = sum(not run for run in lines.values())
    assert algorithm >= 0.7 * len(lines), (algorithm, len(lines))
    assert length <= {"sac": 200, "dqn": 140, "ppo": 290}[agent]


def test_the_count_tells_the_run_from_the_algorithm(tmp_path):
    """On a made-up main(): the lifecycle's calls, a settings check and a plumbing function
    count as the run's; the update and the loop's own lines as the algorithm's."""
    source = (
        "def main(args):\n"
        "    check(args)\n"
        "    def update(x):\n"
        '        """docstring, not counted"""\n'
        "        return x + 1\n"
        "    def policy(obs):\n"
        "        return obs\n"
        "    # a comment, not counted\n"
        "    while life.running(step):\n"
        "        step = update(step)\n"
        "        life.after_step(step)\n"
    )
    path = tmp_path / "agent.py"
    path.write_text(source)
    length, lines = main_lines(path)
    assert length == 11
    run = {number for number, is_run in lines.items() if is_run}
    assert sorted(lines) == [2, 3, 5, 6, 7, 9, 10, 11]
    assert run == {2, 6, 7, 9, 11}
