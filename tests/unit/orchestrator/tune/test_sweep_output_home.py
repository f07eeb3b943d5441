"""`--output ~/sweeps/s1` is the home folder's, also where no shell expanded the `~`.

Why: `relay submit FILE --tune --output ~/sweeps/s1` hands the job `relay tune ... --output '~/sweeps/s1'`, quoted,
so the job's shell leaves the `~` alone; the sweep folder became `<the job's working folder>/~/sweeps/s1`, inside
Ray's session, which the job's own checks then refused (and a local `relay tune --output '~/x'` wrote into ./~/x).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.tune.test_tune_config import plan, smoke_data


def test_a_sweep_folder_under_home_is_in_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    sweep = plan(smoke_data(), output=Path("~/sweeps/s1"))
    assert sweep.output == str(tmp_path / "home" / "sweeps" / "s1")
    assert not (tmp_path / "~").exists()
