"""Hydra launcher `hydra/launcher=local` (the default for `-m`, conf/config.yaml): Hydra's basic launcher, one job
after another in this process, but a re-run sweep is a resume (src/sweep.py): members whose results the sweep dir
already holds are not run again (the sweeper gets their recorded value), unfinished ones resume in their own dir,
missing ones run. `hydra/launcher=basic` is Hydra's stock launcher.
It must live in the `hydra_plugins` namespace package: Hydra only discovers launchers there.
"""
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals

log = logging.getLogger(__name__)


@dataclass
class ArchbenchLocalConf:
    _target_: str = "hydra_plugins.archbench_local.launcher.ResumingLocalLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="archbench_local", node=ArchbenchLocalConf,
                             provider="archbench")


class ResumingLocalLauncher(BasicLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from src import sweep

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        members = sweep.plan(sweep_dir, job_overrides, initial_job_idx, self._compose)
        print(sweep.report(sweep_dir, members), flush=True)
        todo = [m for m in members if m.state != "done"]
        if todo:
            log.info(f"Launching {len(todo)} jobs locally")
        runs = []
        for m in members:
            if m.state == "done":
                runs.append(sweep.done_return(m))
                continue
            log.info(f"\t#{m.num} : {m.label}")
            config = self._compose(m.overrides, m.num)  # with the planned hydra.sweep.subdir
            runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs

    def _compose(self, overrides, num):
        from src.sweep import compose

        return compose(self.hydra_context.config_loader, self.config, overrides, num)
