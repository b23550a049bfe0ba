#!/usr/bin/env python3
"""Summarises TMA prefill timelines written by `attention_bench --timeline-dir DIR`.

Each line of a timeline file is one CTA: its SM, then nanosecond stamps of its start, of its
tasks read, of each consumer ready (Q and logit bound staged) and of each consumer done (0 for
consumers without a task); see kernels::LaunchPagedPrefillTma. A CTA owns its SM, so the time
from its start to its consumers' readiness, and the gaps between CTAs on an SM, are time the
SM idles. Prints one row a file:

  python3 bench/prefill_timeline.py DIR/timeline_*.txt
"""
import collections
import os
import sys

CONSUMERS = 3  # slots for consumers in a record (the widest shape)


def summarise(path):
    ctas = []
    with open(path) as f:
        for line in f:
            words = [int(w) for w in line.split()]
            if len(words) != 3 + 2 * CONSUMERS:
                raise ValueError(f"{path}: a record has {len(words)} words")
            sm, start, tasks_read = words[0], words[1], words[2]
            ready = [t for t in words[3:3 + CONSUMERS] if t]
            done = [t for t in words[3 + CONSUMERS:] if t]
            if not done:
                raise ValueError(f"{path}: a CTA without a consumer")
            ctas.append((sm, start, tasks_read, ready, done))
    kernel_start = min(c[1] for c in ctas)
    kernel_end = max(max(c[4]) for c in ctas)
    by_sm = collections.defaultdict(list)
    for sm, start, _, _, done in ctas:
        by_sm[sm].append((start, max(done)))
    gaps, busy, tail = [], 0, []
    for spans in by_sm.values():
        spans.sort()
        busy += sum(end - start for start, end in spans)
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        tail.append(kernel_end - spans[-1][1])
    n = len(ctas)
    mean = lambda xs: sum(xs) / max(1, len(xs)) / 1e3  # microseconds
    return {
        "file": os.path.basename(path),
        "ctas": n,
        "span_us": (kernel_end - kernel_start) / 1e3,
        "cta_us": mean([max(c[4]) - c[1] for c in ctas]),
        "tasks_read_us": mean([c[2] - c[1] for c in ctas]),
        "ready_us": mean([t - c[1] for c in ctas for t in c[3]]),
        "end_spread_us": mean([max(c[4]) - min(c[4]) for c in ctas]),
        "gap_us": mean(gaps),
        "busy": busy / ((kernel_end - kernel_start) * len(by_sm)),
        "tail_us": mean(tail),
    }


def main(paths):
    if not paths:
        sys.exit(__doc__)
    print(f"{'timeline':44s} {'CTAs':>6s} {'span us':>9s} {'CTA us':>8s} {'tasks us':>8s} "
          f"{'ready us':>8s} {'end spread':>10s} {'gap us':>7s} {'SM busy':>8s} {'tail us':>8s}")
    for path in paths:
        r = summarise(path)
        print(f"{r['file']:44s} {r['ctas']:6d} {r['span_us']:9.1f} {r['cta_us']:8.2f} "
              f"{r['tasks_read_us']:8.2f} {r['ready_us']:8.2f} {r['end_spread_us']:10.2f} "
              f"{r['gap_us']:7.2f} {100 * r['busy']:7.1f}% {r['tail_us']:8.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
