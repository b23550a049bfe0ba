"""Baselines for bench/attention_bench: torch SDPA (dense causal, bf16) and, when importable,
the FoX reference Triton kernel (zhixuan-lin/forgetting-transformer, ops/forgetting_attention.py,
carried from a fetched snapshot at run time, never committed) with and without ACP, on the same
shapes and decay mix (per head tau log-uniform in [1, 1e4], logit = bias(tau) + 0.5 N(0, 1)).

  python3 bench/attention_reference.py [--ref-dir DIR] [--shapes 16x4096,4x16384,2x32768]
      [--taus FILE]

--taus FILE takes each shape's per-head decay times from `attention_bench --taus-out FILE`, so
that both benchmarks run the same mix (the per-token noise is drawn here). Each shape's line
reports the fraction of 64 x 64 causal tiles that ACP's criterion skips on these inputs
(FOX.md section 3: c(first query of the block) - c(last key of the block) < delta), the same
count attention_bench prints for its own.
"""
import argparse
import math
import sys

import torch
import torch.nn.functional as F


def timed(fn, repeats):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-dir", default=None)
    ap.add_argument("--shapes", default="16x4096,4x16384,2x32768")
    ap.add_argument("--heads", type=int, default=24)
    ap.add_argument("--taus", default=None)
    args = ap.parse_args()
    taus = {}
    if args.taus:
        with open(args.taus) as f:
            for line in f:
                shape, *values = line.split()
                taus[shape] = [float(v) for v in values]
    ref = None
    if args.ref_dir:
        sys.path.insert(0, args.ref_dir)
        try:
            from forgetting_attention import forgetting_attention as ref  # noqa: F401
        except Exception as e:  # the reference needs triton and einops
            print(f"reference kernel not importable: {e}")
    torch.manual_seed(0)
    H, d = args.heads, 64
    print(f"{'B x T':9} {'kernel':14} {'prefill ms':>10} {'TFLOP/s':>9} {'decode us':>10}")
    for shape in args.shapes.split(","):
        B, T = (int(x) for x in shape.split("x"))
        q = torch.randn(B, H, T, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, H, T, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, H, T, d, device="cuda", dtype=torch.bfloat16)
        if shape in taus:
            tau = torch.tensor(taus[shape], device="cuda", dtype=torch.float64)
            assert tau.numel() == H, f"{args.taus}: {tau.numel()} decay times for {H} heads"
        else:
            tau = 10 ** (torch.rand(H, device="cuda") * 4)
        bias = -torch.log(torch.expm1(1 / tau))
        logit = bias[None, :, None] + 0.5 * torch.randn(B, H, T, device="cuda")
        log_f = F.logsigmoid(logit).float()
        flops = 4 * d * T * T / 2 * B * H
        delta = -(2 * 8.0 + math.log(T)) - 10.0
        c = torch.cumsum(log_f.double(), dim=-1)  # [B, H, T]
        nb = T // 64
        # [B, H, query block, key block]
        gap = c[..., ::64][..., :, None] - c[..., 63::64][..., None, :]
        causal = torch.ones(nb, nb, device="cuda", dtype=torch.bool).tril()
        skipped = ((gap < delta) & causal).sum().item() / (causal.sum().item() * B * H)
        print(f"{B:3d}x{T:<5d} decay mix: {'given' if shape in taus else 'drawn'}, "
              f"ACP skips {100 * skipped:.1f}% of 64x64 tiles", flush=True)
        rows = []
        ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), 5)
        dec = timed(lambda: F.scaled_dot_product_attention(q[:, :, -1:], k, v), 50) * 1000
        rows.append(("sdpa dense", ms, dec))
        if ref is not None:
            thr = torch.full((B, H), delta, device="cuda")
            for name, t in (("ref dense", None), ("ref acp", thr)):
                ms = timed(lambda: ref(q, k, v, log_f, head_first=True, sm_scale=1 / math.sqrt(d),
                                       adaptive_threshold=t), 5)
                dec = timed(lambda: ref(q[:, :, -1:], k, v, log_f, head_first=True,
                                        sm_scale=1 / math.sqrt(d), adaptive_threshold=t), 50) * 1000
                rows.append((name, ms, dec))
        for name, ms, dec in rows:
            print(f"{B:3d}x{T:<5d} {name:14} {ms:10.2f} {flops / ms / 1e9:9.1f} {dec:10.1f}", flush=True)
        del q, k, v, gap
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
