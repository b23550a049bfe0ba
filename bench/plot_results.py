"""Plots of issue 8's end-to-end benchmark (bench/RESULTS.md), from the figures in
bench/results/issue8.json and, for the heatmap, a /metrics scrape of a foxserve run with
--metrics-per-head on:
  throughput.png  generated tokens/s per workload: foxserve ACP on / off, the HF reference
  latency.png     TTFT and inter-token latency percentiles against the open-loop arrival rate
  pruned.png      the fraction of attention tiles ACP skipped, per layer and head

  python3 bench/plot_results.py --data bench/results/issue8.json --metrics scrape.txt --out DIR
"""
import argparse
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def throughput(data, out):
    rows = data["closed_loop"]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(systems)
    for j, system in enumerate(systems):
        values = [next((r["generated_tokens_per_s"] for r in rows
                        if r["workload"] == w and r["system"] == system), 0) for w in workloads]
        bars = ax.bar([i + j * width for i in range(len(workloads))], values, width, label=system)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(workloads))])
    ax.set_xticklabels([f"{w}\n(concurrency {next(r['concurrency'] for r in rows if r['workload'] == w)})"
                        for w in workloads], fontsize=8)
    ax.set_ylabel("generated tokens / s")
    ax.set_title(f"Closed loop, {data['card'].split(' (')[0]}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out}/throughput.png", dpi=120)


def latency(data, out):
    rows = data["open_loop"]
    rates = [r["rate"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    for p in ("p50", "p90", "p99"):
        a.plot(rates, [r["ttft_ms"][p] for r in rows], marker="o", label=p)
        b.plot(rates, [r["itl_ms"][p] for r in rows], marker="o", label=p)
    for ax, name in ((a, "time to first token (ms)"), (b, "inter-token latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("arrival rate (requests / s)")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.suptitle("foxserve, ACP on, open loop: 2048-token prompts, 256 new tokens", fontsize=10)
    fig.tight_layout()
    fig.savefig(f"{out}/latency.png", dpi=120)


def pruned(metrics_path, out):
    pattern = re.compile(
        r'^foxserve_acp_head_blocks_(computed|skipped)_total\{(.*)\} ([0-9.e+]+)$')
    counts = {}
    for line in open(metrics_path):
        m = pattern.match(line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = (int(labels["layer"]), int(labels["head"]))
        counts.setdefault(key, {"computed": 0.0, "skipped": 0.0})[m.group(1)] += float(m.group(3))
    if not counts:
        raise SystemExit(f"no per-head ACP series in {metrics_path} (--metrics-per-head on?)")
    layers = 1 + max(k[0] for k in counts)
    heads = 1 + max(k[1] for k in counts)
    grid = [[0.0] * heads for _ in range(layers)]
    for (l, h), c in counts.items():
        total = c["computed"] + c["skipped"]
        grid[l][h] = c["skipped"] / total if total else 0.0
    fig, ax = plt.subplots(figsize=(7, 5.5))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("ACP: fraction of attention tiles skipped (W16k, log eps -10)", fontsize=10)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(f"{out}/pruned.png", dpi=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--metrics")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    data = json.load(open(args.data))
    throughput(data, args.out)
    latency(data, args.out)
    if args.metrics:
        pruned(args.metrics, args.out)


if __name__ == "__main__":
    main()
