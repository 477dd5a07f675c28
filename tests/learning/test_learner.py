"""pi_prox for stale rows (learning/learner.py, algos/off_policy.py: PROXIMAL_PASSES): `first_epoch` takes it from
each minibatch's own first-epoch forward instead of a scoring pass. With one minibatch per epoch that forward runs
under the update's starting weights, so it must give the scoring pass's pi_prox and the same update; with several
minibatches later ones see weights the update already moved."""

import copy

import pytest
import torch

from verl_async_vla.algos.off_policy import OFF_POLICY_MODES, proximal_pass
from verl_async_vla.config.schema import AlgoConfig, ModelConfig
from verl_async_vla.learning.learner import Learner
from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import save_checkpoint
from verl_async_vla.sampling.trajectory import episodes_to_proto

HORIZON = 4
MODEL = ModelConfig(image_size=8, channels=4, hidden=16, text_dim=8, chunk=2, init="scratch")


def _learners(tmp_path, rollout_episodes, minibatch_size: int):
    """Two learners from one checkpoint at version 1 (after the same on-policy update), one per proximal method,
    each counting its scoring-pass calls; and a batch the version-0 weights produced (stale at version 1)."""
    torch.manual_seed(0)
    policy = build_policy(MODEL)
    ckpt = save_checkpoint(tmp_path / "init.safetensors", policy, MODEL)
    learners, calls = {}, {}
    for proximal in ("scoring_pass", "first_epoch"):
        algo = AlgoConfig(
            ppo_epochs=2, minibatch_size=minibatch_size, train_batch_episodes=4, proximal=proximal
        )
        learner = Learner(MODEL, algo, str(ckpt), seed=0)
        learner.update(episodes_to_proto(rollout_episodes(policy, n=4, seed=1), HORIZON))
        calls[proximal] = []
        scorer = learner.score_proximal
        learner.score_proximal = lambda batch, rows, s=scorer, c=calls[proximal]: (
            c.append(len(rows)) or s(batch, rows)
        )
        learners[proximal] = learner
    stale = episodes_to_proto(rollout_episodes(policy, n=4, seed=2), HORIZON)
    return learners, calls, stale


def test_first_epoch_gives_the_scoring_pass_pi_prox_and_update_with_one_minibatch_per_epoch(
    tmp_path, rollout_episodes
):
    learners, calls, stale = _learners(tmp_path, rollout_episodes, minibatch_size=10_000)
    # first_epoch bootstraps from the values the rollout recorded, the pass from rescored ones: make them the same
    # here, so that the two updates must agree in everything
    with torch.no_grad():
        stale.batch["values"] = learners["scoring_pass"].score(stale, torch.arange(len(stale)))[2]
    batches = {k: copy.deepcopy(stale) for k in learners}
    metrics = {k: learners[k].update(batches[k]) for k in learners}
    assert calls["scoring_pass"] == [4] and calls["first_epoch"] == []  # no pass under first_epoch
    assert metrics["first_epoch"]["actor/prox_first_epoch"] == 1.0
    assert metrics["scoring_pass"]["actor/prox_first_epoch"] == 0.0
    mask = stale.batch["mask"].bool()
    scored, filled = (batches[k].batch["prox_log_prob"][mask] for k in ("scoring_pass", "first_epoch"))
    # the rows really are stale: the version-1 weights score them away from their behaviour log-probs
    assert (scored - stale.batch["old_log_prob"][mask]).abs().max() > 1e-3
    torch.testing.assert_close(filled, scored, rtol=0, atol=1e-5)
    assert metrics["first_epoch"]["actor/behaviour_abs_log_ratio"] == pytest.approx(
        metrics["scoring_pass"]["actor/behaviour_abs_log_ratio"], abs=1e-5
    )
    a, b = (learners[k].policy.get_weights() for k in ("scoring_pass", "first_epoch"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=f"{name}: the updates differ")


def test_first_epoch_with_several_minibatches_sees_the_weights_the_update_moved(tmp_path, rollout_episodes):
    learners, calls, stale = _learners(
        tmp_path, rollout_episodes, minibatch_size=HORIZON
    )  # one row per minibatch
    batches = {k: copy.deepcopy(stale) for k in learners}
    for k in learners:
        learners[k].update(batches[k])
    assert calls["first_epoch"] == []
    mask = stale.batch["mask"].bool()
    scored, filled = (batches[k].batch["prox_log_prob"] for k in ("scoring_pass", "first_epoch"))
    differs = [(scored[r][mask[r]] - filled[r][mask[r]]).abs().max() > 1e-6 for r in range(len(stale))]
    assert sum(differs) == len(stale) - 1  # all but the first minibatch's row ran under moved weights


@pytest.mark.parametrize(
    ("correction", "resolved"),
    [("none", "first_epoch"), ("behaviour_ppo", "first_epoch"), ("topr", "first_epoch"),
     ("tis", "scoring_pass"), ("decoupled_ppo", "scoring_pass"), ("vtrace", "scoring_pass")],
)  # fmt: skip
def test_auto_takes_a_scoring_pass_only_where_the_correction_reads_pi_prox_before_the_epochs(
    correction, resolved
):
    assert proximal_pass(AlgoConfig(off_policy=correction)) == resolved
    assert proximal_pass(AlgoConfig(off_policy=correction, proximal="scoring_pass")) == "scoring_pass"


def test_first_epoch_is_refused_where_the_correction_needs_pi_prox_up_front():
    needs_pass = [c for c in OFF_POLICY_MODES if proximal_pass(AlgoConfig(off_policy=c)) == "scoring_pass"]
    assert sorted(needs_pass) == ["decoupled_ppo", "tis", "vtrace"]
    for correction in needs_pass:
        with pytest.raises(ValueError, match="algo.proximal=auto or scoring_pass"):
            proximal_pass(AlgoConfig(off_policy=correction, proximal="first_epoch"))
    with pytest.raises(ValueError, match="algo.proximal='later' is unknown"):
        proximal_pass(AlgoConfig(proximal="later"))


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_an_outcome_estimator_update_raises_the_succeeding_episodes_actions_within_each_env(
    tmp_path, rollout_episodes, estimator
):
    """Two envs, each with one success and one failure: the update must make each success's actions more likely
    and each failure's less (the advantages reach the loss by env_key through the learner)."""
    torch.manual_seed(0)
    policy = build_policy(MODEL)
    ckpt = save_checkpoint(tmp_path / "init.safetensors", policy, MODEL)
    eps = rollout_episodes(policy, n=4, seed=3)
    for i, e in enumerate(eps):
        e.env_key = i // 2
        e.reward = [0.0] * (len(e) - 1) + [float(i % 2 == 0)]
    batch = episodes_to_proto(eps, HORIZON)
    algo = AlgoConfig(
        adv_estimator=estimator, ppo_epochs=1, minibatch_size=10_000, train_batch_episodes=4, lr=1e-2
    )
    learner = Learner(MODEL, algo, str(ckpt), seed=0)
    rows = torch.arange(4)
    with torch.no_grad():
        before = learner.score(batch, rows)[0]
    learner.update(batch)
    with torch.no_grad():
        after = learner.score(batch, rows)[0]
    mask = batch.batch["mask"]
    change = ((after - before) * mask).sum(1) / mask.sum(1)
    assert change[0] > 0 and change[2] > 0, change  # the successes (episodes 0 and 2)
    assert change[1] < 0 and change[3] < 0, change
