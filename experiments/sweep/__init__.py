"""Run a grid of ``train.py`` runs on Ray: methods × environments × seeds, resumable.

    python sweep.py --agent dqn --env CartPole-v1 --method none,fire,reset --seeds 3 \
        -- --total-timesteps 100000 --permute-observations --switch-every 20000
    python report.py runs/dqn_CartPole-v1

Everything after ``--`` is given to every run. Each run is one ``train.py`` process writing
``<runs-dir>/<sweep name>/<env>__<agent>-<method>__<seed>/``; ``sweep.json`` beside the runs
records the grid, the extra arguments, the commands that ran the sweep and each run's state:
``pending`` (not started, or waiting to be retried), ``running`` (handed to Ray: running or
waiting for a CPU), ``finished``, ``interrupted`` (stopped, resumable) or ``failed`` (with its
``error``); also its ``attempts`` (train.py processes started for it, as its ``train.log``
counts them) and ``sweep_wall_s``, the wall time of all its attempts. ``sweep.lock`` keeps a
second driver off the same sweep while one runs; a driver killed outright (kill -9) leaves
``running`` states and ``train.pid`` files that the next start reconciles with the folders.

**Where runs execute.** ``ray.init()`` starts a local Ray cluster on this machine (all its
cores, or ``--num-cpus``); ``--address auto`` or ``--address host:port`` (else the
``RAY_ADDRESS`` environment variable) joins a running cluster (``ray start --head`` on one
machine, ``ray start --address ...`` on the others), so the same command scales from a laptop
to a cluster; an address where nothing answers is one line and exit code 2. Ray schedules
each run with ``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs (fractions share a GPU among
small networks). The run's process gets ``OMP_NUM_THREADS`` = its CPUs (rounded, at least 1) and
``CUDA_VISIBLE_DEVICES`` = the GPUs Ray gave it (none: the run trains on the CPU). On a
cluster every node needs this project at the same path, with the same Python environment,
and ``--runs-dir`` on storage all nodes share (NFS or similar): runs write their folders
there and the driver reads their ``summary.json`` from there.

**Resumable and idempotent.** The state of a run is read from its folder, not from memory:
a ``summary.json`` with status ``finished`` (or none, as older runs wrote) is a finished run,
skipped; a folder with a checkpoint is resumed (``train.py --resume``), even one whose
checkpoint is at its last step (killed in its final evaluation: the resume runs it and writes
the summary; an unreadable ``summary.json`` is kept as ``summary.json.unreadable``); only a
folder without any checkpoint is cleared (its ``train.log`` kept) and started afresh.
``--dry-run`` prints that decision for each run, made as the sweep makes it. A run whose
process crashes is retried, resuming from its checkpoint, at most ``--max-retries`` times; a
run that ``train.py`` refuses (exit code 2: bad input, or a loss that diverged) is not
retried, since it would fail the same way. A failed run is recorded in ``sweep.json`` with its
error (the last line its process wrote to stderr); its output is in ``<run>/train.log``,
appended across attempts. Running the same command again tries every run that is not
finished.

**Stopping.** Ctrl-C (or SIGTERM) asks every running run to stop: each ``train.py`` gets
SIGINT, writes a checkpoint and exits, and its run is recorded ``interrupted``; runs not yet
started stay ``pending``. A second Ctrl-C kills the runs at once (they resume from their last
periodic checkpoint). The same command then continues the sweep.

**The same sweep.** The sweep's name (``--name``, default from the agents and envs) is its
folder. Running that name again with another grid or other extra arguments is refused, so
that one sweep never mixes settings; ``--extend`` adds grid values (envs, methods, seeds,
agents) to a sweep with the same extra arguments, ``--force`` adopts the new grid and
arguments (runs already finished are kept as they are: delete their folders to redo them).

**Sweep files** (TOML; Python 3.10 reads them with ``tomli``): the same settings as the
flags, for grids too large for one command line. Flags given on the command line win.

    name = "cartpole_switch"
    agent = "dqn"
    env = ["CartPole-v1"]
    method = ["none", "fire", "reset"]
    seeds = 3                   # or a list: [1, 2, 7]
    cpus_per_run = 1
    [args]                      # or args = ["--total-timesteps", "100000", ...]
    total-timesteps = 100000
    permute-observations = true
    switch-every = 20000

Exit code: 0 when every run finished, 1 when a run failed, 130 when stopped, 2 for a
mistake in the command or its inputs (one line on stderr; checked before any run or Ray
starts: the grid, each value's type, the run arguments and envs as train.py checks them, the
output folders).

Modules: :mod:`~experiments.sweep.config` (the command and sweep files, resolved into a
:class:`~experiments.sweep.config.Sweep`), :mod:`~experiments.sweep.records` (``sweep.json``,
the lock, stale ``train.pid`` files), :mod:`~experiments.sweep.execution` (one run's
``train.py`` process, on a Ray worker), :mod:`~experiments.sweep.driver` (Ray: submit, follow,
stop) and :mod:`~experiments.sweep.cli` (``python sweep.py``).
"""
