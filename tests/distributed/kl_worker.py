"""Run under torchrun by test_vocab_parallel_kl.py: the distillation losses on vocab shards.

    torchrun --nproc_per_node 4 tests/distributed/kl_worker.py OUT.pt

Every rank builds the same full logits, keeps its vocabulary shard, computes each
divergence with all-reduce reducers, and rank 0 saves the values and the gathered
gradients.
"""

import sys

import torch
import torch.distributed as dist


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
    per = (v + pad) // world
    red = VocabParallelReducers(dist.group.WORLD)
    out = {}
    for kind, extra in (("forward_kl", {}), ("reverse_kl", {}), ("jsd", {}),
                        ("topk_kl", {"topk": 7}), ("forward_kl_T2", {"temperature": 2.0})):
        s = s_full[..., rank * per:(rank + 1) * per].clone().requires_grad_(True)
        t = t_full[..., rank * per:(rank + 1) * per]
        loss = distill_loss(s, t, mask, kind.replace("_T2", ""), chunk_size=4, **extra,
                            **red.kwargs())
        loss.backward()
        grads = [torch.empty_like(s.grad) for _ in range(world)]
        dist.all_gather(grads, s.grad.contiguous())
        out[kind] = (loss.detach(), torch.cat(grads, -1))
    if rank == 0:
        torch.save({"out": out, "s": s_full, "t": t_full, "mask": mask}, sys.argv[1])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
