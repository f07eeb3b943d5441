"""The driver validates a config and builds its DAG without torch, torchvision or matplotlib.

Those imports cost seconds on every `relay validate` and at the start of every `relay run`;
only the stage bodies (in workers, or the local executor) need them. The check runs in a fresh
interpreter, because this test process has long imported torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipelines.registry import PIPELINES

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "torchvision", "matplotlib")

SCRIPT = """
import json, sys
HEAVY = {heavy!r}
CONFIGS = {configs!r}

def loaded():
    return sorted({{name.split(".")[0] for name in sys.modules}} & set(HEAVY))

from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.registry import get_pipeline
from pipelines.registry import PIPELINES

for path in CONFIGS:  # the pipelines package alone: validate, preflight, build
    data = apply_overrides(load_yaml(path), [])
    spec = get_pipeline(data["pipeline"], PIPELINES, source=path)
    config = validate_config(spec.config_model, data, source=path)
    assert spec.preflight(config) == [], path
    spec.build(config)
pipelines_only = loaded()

import orchestrator.cli.pipeline_files
for path in CONFIGS:  # what `relay validate` does
    spec, config = orchestrator.cli.pipeline_files.load_pipeline_config(path, [])
    spec.build(config)
print(json.dumps({{"pipelines": pipelines_only, "cli": loaded()}}))
"""


def bundled_config(name: str) -> Path:
    """The bundled digits config of pipeline `name` (CReST's: crest_digits.yaml)."""
    return ROOT / "pipelines" / "configs" / f"{name}_digits.yaml"


def test_every_pipeline_validates_and_builds_without_torch() -> None:
    configs = [str(bundled_config(name)) for name in sorted(PIPELINES)]
    assert all(Path(c).exists() for c in configs), "every registered pipeline needs a bundled <name>_digits.yaml"
    script = SCRIPT.format(heavy=HEAVY, configs=configs)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["pipelines"] == [], (
        f"validating/building imports {loaded['pipelines']}; import them inside the stage bodies"
    )
    assert loaded["cli"] == [], f"`relay validate` imports {loaded['cli']}; import them where checkpoints are read"
