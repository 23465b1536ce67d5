#!/usr/bin/env bash
# The RL evidence grid (docs/results.md): DQN warm-started on MinAtar Breakout, then trained on
# Space Invaders with an emptied replay buffer, against fresh agents on Space Invaders.
# Five seeds; each method acts once, at the switch (FIRE, reset, shrink & perturb) or throughout
# (AdamO). METHODS=redo,fire+adamo adds those two to the same sweep (ReDo recycles throughout,
# FIRE + AdamO: FIRE at the switch, AdamO throughout). The runs live in benchmarks/results/evidence/ (git keeps their config, summary and
# logged scalars, not checkpoints), so the sweep, run again here or on a fresh clone, skips the
# finished runs and continues the others. Then the table and figure:
#   python -m benchmarks.warm_start_rl benchmarks/results/evidence/warm_start \
#       benchmarks/results/evidence/fresh_start --out benchmarks/results/warm_start_minatar \
#       --allow-mixed-commits   # the committed runs span several commits (the table lists them)
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${SEEDS:-5}
METHODS=${METHODS:-none,fire,reset,shrink_perturb,adamo}
# ε held at 0.1 on both tasks, so that the warm and the fresh agents explore task B alike;
# interventions only at the switch (no periodic ones)
COMMON=(--start-e 0.1 --end-e 0.1 --eval-every 10000 --eval-episodes 10
        --metrics-every 10000 --checkpoint-every 50000
        --fire-every 0 --reset-every 0 --shrink-perturb-every 0)
RUNS=benchmarks/results/evidence
# the fresh agents first; then the warm-started ones one seed at a time, each seed for every
# method, so that a grid stopped part-way compares all methods on the seeds it has
python sweep.py --runs-dir "$RUNS" --name fresh_start --agent dqn --env minatar_space_invaders \
    --method none --seeds "$SEEDS" --cpus-per-run 1 "$@" -- --total-timesteps 100000 \
    "${COMMON[@]}"
for seed in $(seq 1 "$SEEDS"); do
    python sweep.py --runs-dir "$RUNS" --name warm_start --agent dqn \
        --env cycle:minatar_breakout,minatar_space_invaders --method "$METHODS" \
        --first-seed "$seed" --seeds 1 --extend --cpus-per-run 1 "$@" -- \
        --total-timesteps 200000 --switch-every 100000 --pad-spaces --clear-buffer-on-switch \
        "${COMMON[@]}"
done
