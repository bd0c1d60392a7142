"""Run under torchrun by test_vocab_parallel_kl.py: the distillation losses on vocab shards.

    torchrun --nproc_per_node 4 tests/distributed/kl_worker.py OUT.pt

Every rank builds the same full logits, keeps its vocabulary shard, computes each
divergence with all-reduce reducers, and rank 0 saves the values and the gathered
gradients. ``topk_kl_tied`` uses a teacher on a grid of halves whose k-th values tie,
within and across shards.
"""

import sys

import torch
import torch.distributed as dist


def tied_teacher(t_full, v):
    """``t_full`` rounded to halves, plus rows of ties placed across the shard boundaries
    (16 columns per rank at TP=4, 32 at TP=2)."""
    t = (t_full * 2).round() / 2
    t[0, 0, :v] = 1.0  # all tied: top-3 keeps columns 0, 1, 2
    t[0, 1, :v] = 0.0
    t[0, 1, [5, 20, 40, 50]] = 3.0  # keeps 5, 20, 40
    t[0, 2, :v] = 0.0
    t[0, 2, 10] = 4.0
    t[0, 2, [17, 33, 34, 49]] = 3.0  # keeps 10, 17, 33
    return t


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from minitron.distill.losses import distill_loss
    from minitron.parallel.vocab import VocabParallelReducers

    g = torch.Generator().manual_seed(0)
    v, pad = 60, 4  # 64 padded columns: the last 4 are padding (-inf), like a padded embedding
    s_full = torch.randn(3, 5, v + pad, generator=g, dtype=torch.float64)
    t_full = torch.randn(3, 5, v + pad, generator=g, dtype=torch.float64)
    s_full[..., v:] = float("-inf")
    t_full[..., v:] = float("-inf")
    mask = (torch.rand(3, 5, generator=g) > 0.2).double()
    mask[0, :3] = 1.0
    t_tied = tied_teacher(t_full, v)
    per = (v + pad) // world
    red = VocabParallelReducers(dist.group.WORLD)
    out = {}
    for kind, extra, teacher in (
        ("forward_kl", {}, t_full),
        ("reverse_kl", {}, t_full),
        ("jsd", {}, t_full),
        ("topk_kl", {"topk": 7}, t_full),
        ("forward_kl_T2", {"temperature": 2.0}, t_full),
        ("topk_kl_tied", {"topk": 3}, t_tied),
    ):
        s = s_full[..., rank * per : (rank + 1) * per].clone().requires_grad_(True)
        t = teacher[..., rank * per : (rank + 1) * per]
        loss = distill_loss(
            s,
            t,
            mask,
            kind.replace("_T2", "").replace("_tied", ""),
            chunk_size=4,
            **extra,
            **red.kwargs(),
        )
        loss.backward()
        grads = [torch.empty_like(s.grad) for _ in range(world)]
        dist.all_gather(grads, s.grad.contiguous())
        out[kind] = (loss.detach(), torch.cat(grads, -1))
    if rank == 0:
        torch.save(
            {
                "out": out,
                "s": s_full,
                "t": t_full,
                "t_tied": t_tied,
                "mask": mask,
                "world": world,  # the vocab-parallel group the losses were reduced over
                "slice": per,
            },
            sys.argv[1],
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
