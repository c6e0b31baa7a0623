"""Exploration (GPU machine): does splitting a batch over CUDA streams inside one CUDA graph help?

The compiled model (inductor, default mode, freezing) is captured by hand in a CUDA graph: the whole
batch on one stream, or the batch cut into parts run on parallel streams (fork/join inside the graph),
so one part's GELU/LayerNorm/attention can fill SMs left idle by the other part's GEMM tails.

    python benchmarks/streams.py --model DIR [--batch 64] [--seq 32] [--attn padded_triton]
"""

from __future__ import annotations

import argparse

import torch

from ela.config import ModelConfig
from ela.runtime.models import load_model


def capture(compiled, parts: list[dict[str, torch.Tensor]]) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor]]:
    """One graph running each part on its own stream (one part: plain capture)."""
    streams = [torch.cuda.Stream() for _ in parts]
    main = torch.cuda.current_stream()
    for s in streams:
        s.wait_stream(main)
    for s, p in zip(streams, parts, strict=True):
        with torch.cuda.stream(s), torch.inference_mode():
            for _ in range(3):
                compiled(**p)
    for s in streams:
        main.wait_stream(s)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    outs = []
    with torch.cuda.graph(graph), torch.inference_mode():
        cap = torch.cuda.current_stream()
        for s in streams:
            s.wait_stream(cap)
        for s, p in zip(streams, parts, strict=True):
            with torch.cuda.stream(s):
                outs.append(compiled(**p).logits)
        for s in streams:
            cap.wait_stream(s)
    return graph, outs


def ms_per_replay(graph: torch.cuda.CUDAGraph, iters: int = 300) -> float:
    """Milliseconds per replay, best of 3 runs of `iters` replays."""
    best = float("inf")
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / iters)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--attn", default="padded_triton")
    ap.add_argument("--splits", default="1,2,4")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = load_model(ModelConfig("m", a.model, None, a.seq, a.attn, True)).model
    model = model.to("cuda", torch.bfloat16).eval()
    ids = torch.randint(5, 1000, (a.batch, a.seq), device="cuda")
    lengths = torch.randint(a.seq // 4, a.seq + 1, (a.batch,), device="cuda")
    mask = (torch.arange(a.seq, device="cuda")[None, :] < lengths[:, None]).long()
    torch._dynamo.config.recompile_limit = 16
    with torch._inductor.config.patch(freezing=True):
        compiled = torch.compile(model, dynamic=False, fullgraph=True)
        with torch.inference_mode():
            want = model(input_ids=ids, attention_mask=mask).logits.float()
        print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, batch {a.batch} x {a.seq}, {a.attn}")
        for n in map(int, a.splits.split(",")):
            step = a.batch // n
            parts = [
                {"input_ids": ids[i : i + step], "attention_mask": mask[i : i + step]} for i in range(0, a.batch, step)
            ]
            graph, outs = capture(compiled, parts)
            graph.replay()
            torch.cuda.synchronize()
            diff = (torch.cat(outs).float() - want).abs().max().item()
            print(
                f"{n} part(s) on {n} stream(s): {ms_per_replay(graph):.3f} ms/batch, max logit diff vs eager {diff:.3f}"
            )


if __name__ == "__main__":
    main()
