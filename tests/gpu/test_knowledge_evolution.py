"""Knowledge Evolution's split masks and re-initialisation on a model that lives on the GPU."""

from __future__ import annotations

import pytest
import torch

from tests.gpu.cuda import needs_cuda

pytestmark = [pytest.mark.gpu, needs_cuda]

SPLIT_RATE = 0.5


def cnn(device: str) -> torch.nn.Module:
    from pipelines.models import create_model

    torch.manual_seed(0)
    return create_model("small_cnn", 10, 1).to(device)


def test_kels_masks_of_a_cuda_model_equal_those_of_the_same_model_on_cpu():
    from pipelines.knowledge_evolution import make_split_masks

    on_gpu = make_split_masks(cnn("cuda"), SPLIT_RATE, "kels", torch.Generator(device="cuda").manual_seed(0))
    on_cpu = make_split_masks(cnn("cpu"), SPLIT_RATE, "kels", torch.Generator().manual_seed(0))
    assert on_gpu.keys() == on_cpu.keys()
    assert all(torch.equal(on_gpu[name].cpu(), on_cpu[name]) for name in on_cpu)


def test_wels_masks_drawn_on_the_gpu_are_cpu_bool_masks_at_the_split_rate():
    from pipelines.knowledge_evolution import fit_fraction, make_split_masks

    masks = make_split_masks(cnn("cuda"), SPLIT_RATE, "wels", torch.Generator(device="cuda").manual_seed(0))
    assert all(mask.device.type == "cpu" and mask.dtype == torch.bool for mask in masks.values())
    big = {name: value for name, value in fit_fraction(masks).items() if masks[name].numel() >= 10_000}
    assert big and all(abs(value - SPLIT_RATE) < 0.02 for value in big.values())


def test_reinitialising_a_cuda_model_keeps_the_fit_hypothesis_and_is_seeded():
    from pipelines.knowledge_evolution import make_split_masks, reinitialize_reset_hypothesis

    masks = make_split_masks(cnn("cpu"), SPLIT_RATE, "kels", torch.Generator().manual_seed(0))
    before = {name: p.detach().clone() for name, p in cnn("cuda").named_parameters()}
    runs = []
    for _ in range(2):
        model = cnn("cuda")
        reinitialize_reset_hypothesis(model, masks, torch.Generator(device="cuda").manual_seed(1))
        runs.append({name: p.detach().clone() for name, p in model.named_parameters()})
    for name, mask in masks.items():
        after, keep = runs[0][name], mask.cuda()
        assert after.device.type == "cuda"
        assert torch.equal(after[keep], before[name][keep])  # fit hypothesis untouched
        assert not torch.equal(after[~keep], before[name][~keep])  # reset hypothesis drawn afresh
        assert torch.equal(runs[0][name], runs[1][name])  # one seed, one draw
