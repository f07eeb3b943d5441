"""Training on CUDA: FixMatch steps, every registered model under autocast, checkpoints read back on the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from tests.gpu.cuda import fixmatch_run, needs_cuda

pytestmark = [pytest.mark.gpu, needs_cuda]

STEPS = 5


def test_fixmatch_takes_its_steps_on_cuda_and_its_checkpoint_predicts_the_same_on_cpu(tmp_path):
    from orchestrator.dag import StageResult
    from orchestrator.engine.artifacts import ArtifactStore
    from pipelines.data import load_dataset
    from pipelines.models import to_float
    from pipelines.stages.common import load_model, model_checkpoint

    ema, reports = fixmatch_run("cuda", STEPS)
    assert [step for step, _ in reports] == list(range(1, STEPS + 1))
    assert all(math.isfinite(metrics["loss"]) for _, metrics in reports)
    assert all(p.device.type == "cuda" for p in ema.parameters())
    checkpoint = model_checkpoint(ema, "small_cnn", 10, 1, 0.0)
    assert all(t.device.type == "cpu" for t in checkpoint["state_dict"].values())
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage("f" * 64, "g00/train", StageResult(outputs={"g00/model": checkpoint}))
    on_cpu = load_model(store.load(manifest.outputs["g00/model"]), "cpu")
    images = load_dataset("synthetic", None).train.images[:256]
    with torch.inference_mode():
        expected = ema(to_float(images.cuda())).float().cpu()
        got = on_cpu(to_float(images)).float()
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-3)


def registered_models() -> list[str]:
    from pipelines.models import MODELS

    return sorted(MODELS)


@pytest.mark.parametrize("name", registered_models())
def test_every_registered_model_takes_a_training_step_under_autocast_on_cuda(name):
    """Relay's loops train in float32 today (no AMP setting); this is the AMP that would apply:
    bfloat16 autocast, float32 master weights, finite loss and gradients, for every model."""
    from pipelines.models import create_model

    torch.manual_seed(0)
    model = create_model(name, 10, 3).cuda().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    images = torch.randn(16, 3, 32, 32, device="cuda")
    targets = torch.randint(0, 10, (16,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
    loss.backward()
    assert logits.dtype == torch.bfloat16
    assert math.isfinite(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    optimizer.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_checkpoint_holding_cuda_tensors_is_stored_and_read_back_on_the_cpu(tmp_path):
    """A stage may return tensors still on the GPU; the store writes them and every reader gets CPU tensors."""
    from orchestrator.dag import StageResult
    from orchestrator.engine.artifacts import ArtifactStore
    from orchestrator.engine.checkpoints import StoreCheckpointer

    state = {"w": torch.randn(64, 32, device="cuda"), "step": 7, "nested": {"b": torch.arange(5, device="cuda")}}
    store = ArtifactStore(str(tmp_path))
    manifest = store.write_stage("e" * 64, "g00/train", StageResult(outputs={"g00/model": state}))
    loaded = store.load(manifest.outputs["g00/model"])
    assert loaded["w"].device.type == "cpu" and loaded["nested"]["b"].device.type == "cpu"
    torch.testing.assert_close(loaded["w"], state["w"].cpu())
    assert loaded["step"] == 7 and loaded["nested"]["b"].tolist() == [0, 1, 2, 3, 4]
    checkpointer = StoreCheckpointer(store, "d" * 64)
    checkpointer.save(state, step=7)
    resumed = checkpointer.load()
    assert resumed is not None and resumed["w"].device.type == "cpu"
    torch.testing.assert_close(resumed["w"], state["w"].cpu())


def host_syncs(run) -> int:
    """How many times ``run()`` made the host wait for the GPU (torch's sync debug mode, one warning each)."""
    import warnings

    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)


def test_the_fixmatch_loop_waits_for_the_gpu_per_report_not_per_step():
    """Between reports the host never waits for the GPU, so it fetches and augments the next batch while the GPU
    computes this one. A per-step NaN check or a blocking copy of the targets would add a wait to every step."""
    fixmatch_run("cuda", 2, report_every=1000)  # cudnn and the allocator settle first
    short = host_syncs(lambda: fixmatch_run("cuda", 3, report_every=1000))
    long = host_syncs(lambda: fixmatch_run("cuda", 9, report_every=1000))
    assert long == short, f"{long - short} more waits for 6 more steps ({short} in 3 steps, {long} in 9)"


def test_a_nan_on_cuda_still_names_the_step_it_appeared_at():
    """The NaN check is read once per report window on a GPU; the error names the first bad step all the same."""
    from pipelines.data import load_dataset
    from pipelines.models import create_model

    channels = int(load_dataset("synthetic", None).train.images.shape[1])

    class NanAtThirdStep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.calls = create_model("small_cnn", 10, channels), 0

        def forward(self, x):
            self.calls += 1
            out = self.net(x)
            return out * float("nan") if self.calls == 3 else out

    with pytest.raises(FloatingPointError, match="train_fixmatch: loss is nan at step 3 of 8"):
        fixmatch_run("cuda", 8, report_every=5, model=NanAtThirdStep())
