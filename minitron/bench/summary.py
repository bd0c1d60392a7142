"""Throughput figures from several measurement rounds, as pure functions.

``minitron bench`` measures every (model, backend) once per round, in an order that
rotates between rounds (:func:`round_order`), so a slow spell of a busy machine falls on
different models in different rounds instead of on one model's every repeat. A figure is
the median over rounds; its spread, ``(max - min) / median``, says how far the rounds
disagreed, and a figure whose spread is over :data:`UNSTABLE_SPREAD` is marked unstable
(as is a speed-up computed from one).
"""

from __future__ import annotations

import statistics

UNSTABLE_SPREAD = 0.20
METRICS = ("prefill", "decode")


def round_order(items: list, r: int) -> list:
    """``items`` rotated by ``r``: round 0 runs a, b, c; round 1 b, c, a; round 2 c, a, b."""
    k = r % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def spread(values: list[float]) -> float:
    """``(max - min) / median`` of the rounds (0 for one round: no disagreement to see)."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else float("inf")


def aggregate(rounds: list[dict]) -> dict:
    """One (model, backend)'s rounds -> medians per batch, with spreads and instability."""
    batches = rounds[0]["results"].keys()
    out = {}
    for b in batches:
        per = [r["results"][b] for r in rounds]
        fig = {k: statistics.median(p[k] for p in per) for k in per[0]}
        fig["spread"] = {m: spread([p[f"{m}_tokens_per_s"] for p in per]) for m in METRICS}
        fig["unstable"] = [m for m in METRICS if fig["spread"][m] > UNSTABLE_SPREAD]
        out[b] = fig
    return {
        "results": out,
        "rounds": len(rounds),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in rounds),
        "parameters": rounds[0].get("parameters"),
    }


def speedups(results: dict, baseline: str) -> list[dict]:
    """Speed-ups over ``baseline`` per (model, backend, batch); a speed-up is unstable when
    either figure it divides is."""
    out = []
    for name, per_backend in results.items():
        for backend, r in per_backend.items():
            base = results[baseline][backend]["results"]
            for batch, v in r["results"].items():
                row = {"model": name, "backend": backend, "batch": int(batch)}
                for m in METRICS:
                    key = f"{m}_tokens_per_s"
                    row[m] = v[key] / base[batch][key]
                    row[f"{m}_unstable"] = m in v["unstable"] or m in base[batch]["unstable"]
                out.append(row)
    return out


def mark(value: float, unstable: bool, fmt: str = "{:.2f}") -> str:
    """A table cell: the figure, flagged when the rounds disagreed by more than 20%."""
    return fmt.format(value) + (" (unstable)" if unstable else "")
