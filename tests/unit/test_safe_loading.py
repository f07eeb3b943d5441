"""Checkpoints are read with torch.load(weights_only=True) only: a scan of every torch.load call in the code.

torch.load without weights_only unpickles arbitrary objects, so a tampered checkpoint could run code.
Every call in orchestrator/, pipelines/, benchmarks/ and tests/ must pass weights_only=True literally.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("orchestrator", "pipelines", "benchmarks", "tests")


def torch_load_calls(path: Path) -> list[ast.Call]:
    """Calls of something.load(...) whose receiver is named torch or comes from _torch() (the lazy import)."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            receiver = node.func.value
            named = isinstance(receiver, ast.Name) and receiver.id == "torch"
            lazy = isinstance(receiver, ast.Call) and getattr(receiver.func, "id", "") == "_torch"
            if named or lazy:
                calls.append(node)
    return calls


def weights_only(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
               for k in call.keywords)  # fmt: skip


def test_every_torch_load_passes_weights_only_true() -> None:
    found, unsafe = 0, []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for call in torch_load_calls(path):
                found += 1
                if not weights_only(call):
                    unsafe.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert found >= 4, "the scan finds the store's, the checkpointer's and lineage's torch.load calls"
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def test_the_scan_tells_safe_from_unsafe(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "torch.load(f, weights_only=True)\ntorch.load(f)\n_torch().load(f, weights_only=False)\nnp.load(f)\n"
    )
    calls = torch_load_calls(sample)
    assert [weights_only(call) for call in calls] == [True, False, False]
