"""Data parallelism for one large run under torchrun: one process per device (rank), joined by
torch.distributed (NCCL on GPUs, gloo on CPUs).

Every rank builds the same data, model and shuffled order from the same seed. Each global batch is
split across the ranks (`shard`); after each backward pass the gradients are averaged in one
all-reduce, weighted by each rank's share of the batch, so a step equals the one-process step on the
whole batch (up to float summation order); buffers (BatchNorm statistics, computed per rank as in
DDP) are then taken from rank 0, so every rank holds the same model. Evaluation is sharded and
gathered exactly, so every rank selects the same epoch. Only rank 0 writes files and prints.
Methods that keep per-sample state across steps (LfF's, DFA's and LC's loss averages, GroupDRO's
group weights) would need that state gathered too; they refuse to run on more than one rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Tuple

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass
class World:
    rank: int = 0
    size: int = 1
    weight: float = 1.0  # this rank's share of the current batch, times the world size

    @property
    def main(self) -> bool:
        return self.rank == 0


WORLD = World()


def setup(device: str) -> Tuple[World, str]:
    """Join the torchrun job this process belongs to (WORLD_SIZE > 1), once; returns the world and the
    device name to use (cuda:LOCAL_RANK where the run asks for CUDA or for auto on a GPU machine)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return WORLD, device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    WORLD.rank, WORLD.size = dist.get_rank(), dist.get_world_size()
    return WORLD, device


def check_method(model) -> None:
    """Before the run folder appears: can this method's phases be shared by the ranks?"""
    if WORLD.size <= 1:
        return
    if not getattr(model, "data_parallel", False):
        raise ConfigError(f"method {model.cfg.NAME} keeps per-sample state across steps and runs in one process "
                          "only; run it without torchrun (many runs at once: denetdm benchmark --workers N)")
    for phase in model.phases():
        if phase.optim.batch_size % WORLD.size:
            raise ConfigError(f"{phase.name}: batch size {phase.optim.batch_size} does not split evenly over "
                              f"{WORLD.size} processes; set a batch size divisible by the number of processes")


def shard(order: torch.Tensor, batch_size: int, drop_last: bool) -> List[Tuple[torch.Tensor, float]]:
    """This rank's part of each global batch of `order`, with its weight (its share of the batch times
    the world size). A last batch too small to give every rank a sample is dropped."""
    batches = list(torch.split(order, batch_size))
    if batches and (len(batches[-1]) < WORLD.size or (drop_last and len(batches[-1]) < batch_size)):
        batches.pop()
    return [(b[WORLD.rank::WORLD.size], len(b[WORLD.rank::WORLD.size]) * WORLD.size / len(b)) for b in batches]


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """The batch-weighted mean of every rank's gradients, in one flat all-reduce."""
    grads = [p.grad for p in params if p.grad is not None]
    if WORLD.size <= 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]) * (WORLD.weight / WORLD.size)
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def sync_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, as DDP's broadcast_buffers does."""
    if WORLD.size > 1:
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.broadcast(buffer, 0)


def sync_module(module: torch.nn.Module) -> None:
    """Rank 0's weights and buffers on every rank: after building a model or re-initialising part of it
    (random draws of augmentation differ between ranks, so their random states do too)."""
    if WORLD.size > 1:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, 0)


def gather(local: torch.Tensor, total: int) -> torch.Tensor:
    """Values that rank r computed for items r, r + size, ... of `total`, put back in item order."""
    if WORLD.size <= 1:
        return local
    width = -(-total // WORLD.size)
    padded = torch.full((width, *local.shape[1:]), -1, dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(WORLD.size)]
    dist.all_gather(parts, padded)
    return torch.stack(parts, dim=1).reshape(-1, *local.shape[1:])[:total]


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Summed over the ranks (epoch loss totals), so every rank takes the same decisions."""
    if WORLD.size > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    WORLD.rank, WORLD.size, WORLD.weight = 0, 1, 1.0


def barrier() -> None:
    if WORLD.size > 1:
        dist.barrier()
