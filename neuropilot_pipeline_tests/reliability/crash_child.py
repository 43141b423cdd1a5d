"""A writer the crash tests kill with SIGKILL: `python -m ...crash_child MODE DIR [ARG]`.

Each mode runs one of NeuroPilot's real writers in a loop (or up to a chosen point) and
prints READY once its imports are done, so the parent can kill it mid-write.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PARTITION = "2026-11-01-00:00"


def frame(generation: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(generation)
    minutes = pd.date_range("2026-11-01", periods=rows // 10, freq="1min", tz="UTC")
    return pd.DataFrame({
        "service": np.repeat([f"svc{i}" for i in range(10)], len(minutes)),
        "ts": np.tile(minutes.values, 10),
        "value": rng.normal(size=len(minutes) * 10),
        "generation": generation,
    })


def thresholds(generation: int) -> dict:
    return {"cpu_scale_up_threshold": 60 + generation % 20, "min_instances": 2 + generation % 3}


def apply_once(repo_path: Path, generation: int) -> None:
    from neuropilot_pipeline.core.gitops import InfraRepo
    from neuropilot_pipeline.core.tfvars import update_tfvars_text

    repo = InfraRepo(repo_path)
    tfvars = repo_path / "web" / "terraform.tfvars"
    with repo.locked():
        repo.recover_interrupted_apply()
        text = update_tfvars_text(tfvars.read_text(), thresholds(generation))
        repo.apply_file_change(tfvars, text, f"ai-ops: generation {generation}", "crash test",
                               {"NeuroPilot-Run-Id": f"run-{generation}", "NeuroPilot-Partition": f"g{generation}/web"})


def apply_batch(repo_path: Path, generation: int) -> list:
    """One window's decisions for every service in the repository, as terraform_vars applies them."""
    from neuropilot_pipeline.core.gitops import InfraRepo
    from neuropilot_pipeline.core.tfvars import update_tfvars_text

    repo = InfraRepo(repo_path)
    files = sorted(repo_path.glob("*/terraform.tfvars"))
    with repo.locked():
        repo.recover_interrupted_apply()
        return repo.apply_file_changes([
            (tfvars, update_tfvars_text(tfvars.read_text(), thresholds(generation + i)),
             f"ai-ops: generation {generation} {tfvars.parent.name}", "crash test",
             {"NeuroPilot-Run-Id": f"run-{generation}", "NeuroPilot-Partition": f"g{generation}/{tfvars.parent.name}"})
            for i, tfvars in enumerate(files)])


def main() -> None:
    mode, root = sys.argv[1], Path(sys.argv[2])
    if mode == "parquet":
        from neuropilot_pipeline.storage.warehouse import Warehouse

        wh, rows = Warehouse(root), int(sys.argv[3])
        frames = [frame(g, rows) for g in (1, 2)]
        print("READY", flush=True)
        g = 0
        while True:
            g += 1
            wh.write_partition("raw_metrics", PARTITION, frames[g % 2].assign(generation=g))
    elif mode == "state":
        from neuropilot_pipeline.storage.state import StateStore

        store = StateStore(root)
        print("READY", flush=True)
        g = 0
        while True:
            g += 1
            store.write_arrays("detector", PARTITION, {"level": np.full(400_000, float(g)), "generation": np.array([g])})
            store.write_json("policy", PARTITION, {"generation": g, "weights": [g] * 20_000})
    elif mode == "model":
        from neuropilot_pipeline.core.gmm import train_model

        rng = np.random.default_rng(0)
        # One fit before READY: the first pays for sklearn's lazy imports, which on a loaded
        # machine could outlast the kill delay and leave no save to check.
        train_model(np.vstack([rng.normal(0, 1, (300, 3)), rng.normal(5, 1, (300, 3))]), ["a", "b", "c"])
        print("READY", flush=True)
        g = 0
        while True:
            g += 1
            X = np.vstack([rng.normal(0, 1, (300, 3)), rng.normal(5 + g % 7, 1, (300, 3))])
            model, _ = train_model(X, ["a", "b", "c"])
            model.save(root)
            print("SAVED", flush=True)
    elif mode == "apply":
        print("READY", flush=True)
        g = int(sys.argv[3]) if len(sys.argv) > 3 else 0
        while True:
            g += 1
            apply_once(root, g)
    elif mode == "apply-die-before-commit":
        # The process dies after the tfvars file is written and before git commits it.
        from neuropilot_pipeline.core.gitops import InfraRepo

        InfraRepo._commit_written_file = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        apply_once(root, int(sys.argv[3]))
    elif mode == "apply-batch-die":
        # `apply-batch-die DIR GENERATION K before|after`: the process dies once K commits of the
        # batch are made, with the next service's file written (before) or not yet (after).
        from neuropilot_pipeline.core.gitops import InfraRepo

        generation, k, when = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        commit, made = InfraRepo._commit_written_file, []

        def commit_then_maybe_die(self, rel, message):
            if when == "before" and len(made) == k:
                os.kill(os.getpid(), signal.SIGKILL)
            commit(self, rel, message)
            made.append(rel)
            if when == "after" and len(made) == k:
                os.kill(os.getpid(), signal.SIGKILL)

        InfraRepo._commit_written_file = commit_then_maybe_die
        apply_batch(root, generation)
    elif mode == "apply-batch-once":
        apply_batch(root, int(sys.argv[3]))
    elif mode == "apply-once":
        apply_once(root, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
