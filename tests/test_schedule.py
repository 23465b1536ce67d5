"""plasticity.schedule.Every and At, and plasticity.tasks.task_period."""

import numpy as np
import pytest

from plasticity.schedule import At, Every
from plasticity.tasks import TASK_PERIOD, task_period


def fired(schedule: Every | At, steps) -> list[int]:
    return [step for step in steps if schedule.due(step)]


def test_due_once_per_multiple_even_when_steps_jump():
    assert fired(Every(100), range(0, 501, 7)) == [105, 203, 301, 406]  # 500 not reached by 7s
    assert fired(Every(100), [50, 250, 260, 300]) == [250, 300]  # one firing for 100 and 200


def test_crossings_count_every_multiple_passed():
    schedule = Every(4)
    assert [schedule.crossings(step) for step in (3, 8, 9, 20)] == [0, 2, 0, 3]


def test_zero_period_is_never_due_and_negative_is_refused():
    assert fired(Every(0), range(1000)) == []
    with pytest.raises(ValueError, match="a period must be 0"):
        Every(-1)


def test_start_and_skip_to_do_not_catch_up():
    assert fired(Every(100, start=250), [260, 299, 300, 301]) == [300]
    schedule = Every(100)
    schedule.skip_to(480)
    assert fired(schedule, [490, 500]) == [500]


def test_state_dict_round_trip_and_a_changed_period():
    schedule = Every(100)
    fired(schedule, [120, 230])
    resumed = Every(100)
    resumed.load_state_dict(schedule.state_dict())
    assert fired(resumed, [250, 299, 300]) == [300]
    rescaled = Every(50)  # the step reached (200) is what carries over
    rescaled.load_state_dict(schedule.state_dict())
    assert fired(rescaled, [240, 250]) == [250]


def test_task_period_reads_vector_and_per_env_infos():
    vector = {TASK_PERIOD: np.array([2, 3, 0]), "_" + TASK_PERIOD: np.array([True, True, False])}
    assert task_period(vector) == 3
    assert (
        task_period({TASK_PERIOD: np.array([5, 9]), "_" + TASK_PERIOD: np.array([1, 0], bool)}) == 5
    )
    assert task_period([{"x": 1}, {TASK_PERIOD: 4}, {TASK_PERIOD: 2}]) == 4
    assert task_period({"episode": {}}) is None and task_period([{}, {}]) is None


def test_at_is_due_once_at_each_listed_step_even_when_steps_jump():
    assert fired(At([250, 100, 100]), range(0, 501, 7)) == [105, 252]  # sorted, deduplicated
    assert fired(At([100, 200]), [50, 250, 260]) == [250]  # one firing for both
    schedule = At([4, 8, 12])
    assert [schedule.crossings(step) for step in (3, 9, 9, 20)] == [0, 2, 0, 1]
    assert fired(At([]), range(100)) == []


def test_at_start_skip_to_and_state_dict():
    assert fired(At([100, 300], start=100), [150, 299, 300]) == [300]  # 100 is the start
    schedule = At([100, 200])
    schedule.skip_to(150)
    assert fired(schedule, [160, 210]) == [210]
    half = At([100, 200])
    fired(half, [120])
    resumed = At([50, 100, 200])  # another list: the step reached (120) is what carries over
    resumed.load_state_dict(half.state_dict())
    assert half.state_dict() == {"steps": [100, 200], "reached": 120}
    assert fired(resumed, [199, 200, 400]) == [200]


@pytest.mark.parametrize("steps", [[0], [-3], [1.5], [True], ["100"]])
def test_at_refuses_steps_that_are_not_positive_integers(steps):
    with pytest.raises(ValueError, match="steps must be positive integers"):
        At(steps)
