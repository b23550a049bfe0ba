#!/usr/bin/env python3
"""Summarises TMA prefill timelines written by `attention_bench --timeline-dir DIR`.

Each line of a timeline file is one tile (kernels::LaunchPagedPrefillTma; the kernel is
persistent, one CTA an SM running tile after tile): its SM, then nanosecond stamps of its take,
of its staging done (tasks, rows and Q), of each consumer's start on it and of each consumer's
rows written (0 for consumers without a task). A consumer idles between its end of one tile and
its start of the next on the same SM, and at the launch's start and end. Prints one row a file:

  tiles, SMs, the span (first start to last end), the mean consumer time a tile, the mean take
  to staged time, the mean wait of a consumer between two tiles, the consumers' busy fraction of
  the span, the mean time from the first consumer start to the first on an SM (start), and from
  an SM's last end to the launch's (tail).

Where the bench also wrote the tasks (DIR/tasks_<B>x<T>_<dense|acp>.txt: head, KV table, first
and last key block a line), the tiles' walks are planned as the kernel plans them (tile j in the
order taken runs tasks (tiles - 1 - j) C .. C - 1 on, C consumers; consecutive tasks of one
(head, table) whose key ranges join share a walk, 128 keys an iteration), and a least-squares
line of a tile's time (its longest consumer's) against its iterations, over tiles of one walk,
splits it into a fixed part a tile and a part an iteration; tiles of several walks (whose
consumers wait for one walk after another) are counted apart.

  python3 bench/prefill_timeline.py DIR/timeline_*.txt
"""
import collections
import os
import sys

CONSUMERS = 3  # slots for consumers in a record (the widest shape)
PAGES = 2  # key blocks (pages) an iteration


def read_tasks(path):
    with open(path) as f:
        return [tuple(int(w) for w in line.split()) for line in f]


def tile_iterations(tasks, first, consumers):
    """The tile's walks (as the kernel's PlanWalks) and their iterations."""
    walks, prev = [], None
    for head, table, start, last in tasks[first:first + consumers]:
        if (walks and prev == (head, table) and start <= walks[-1][1] + 1 and
                walks[-1][0] <= last + 1):
            walks[-1] = (min(walks[-1][0], start), max(walks[-1][1], last))
        else:
            walks.append((start, last))
        prev = (head, table)
    return len(walks), sum((hi - lo + PAGES) // PAGES for lo, hi in walks)


def fit_tiles(tiles, tasks, consumers):
    """Least squares of one-walk tiles' times (us) on their iterations; multi-walk tiles apart."""
    xs, ys, multi = [], [], []
    for j, (_, _, _, starts, ends) in enumerate(tiles):
        walks, iterations = tile_iterations(tasks, (len(tiles) - 1 - j) * consumers, consumers)
        time_us = max(e - s for s, e in zip(starts, ends) if s) / 1e3
        if walks == 1:
            xs.append(iterations)
            ys.append(time_us)
        else:
            multi.append(time_us)
    mx, my = sum(xs) / max(1, len(xs)), sum(ys) / max(1, len(ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    if not sxx:  # no line to fit: no one-walk tiles, or all of one length
        return {}
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return {"fixed_us": my - slope * mx, "iteration_us": slope, "multi": len(multi),
            "multi_us": sum(multi) / max(1, len(multi))}


def summarise(path):
    tiles = []
    with open(path) as f:
        for line in f:
            words = [int(w) for w in line.split()]
            if len(words) != 3 + 2 * CONSUMERS:
                raise ValueError(f"{path}: a record has {len(words)} words")
            sm, taken, staged = words[0], words[1], words[2]
            spans = [(s, d) for s, d in zip(words[3:3 + CONSUMERS], words[3 + CONSUMERS:]) if s]
            if not spans:
                raise ValueError(f"{path}: a tile without a consumer")
            tiles.append((sm, taken, staged, words[3:3 + CONSUMERS], words[3 + CONSUMERS:]))
    starts = [s for t in tiles for s in t[3] if s]
    ends = [d for t in tiles for d in t[4] if d]
    kernel_start, kernel_end = min(starts), max(ends)
    span = kernel_end - kernel_start
    # Per SM and consumer slot, its (start, end) spans in order.
    lanes = collections.defaultdict(list)
    for sm, _, _, s, d in tiles:
        for g in range(CONSUMERS):
            if s[g]:
                lanes[(sm, g)].append((s[g], d[g]))
    waits, busy = [], 0
    first_start, last_end = {}, {}
    for (sm, g), spans in lanes.items():
        spans.sort()
        busy += sum(e - s for s, e in spans)
        waits += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        first_start[sm] = min(first_start.get(sm, spans[0][0]), spans[0][0])
        last_end[sm] = max(last_end.get(sm, spans[-1][1]), spans[-1][1])
    sms = len(first_start)
    consumers = max(sum(1 for x in t[3] if x) for t in tiles)
    mean = lambda xs: sum(xs) / max(1, len(xs)) / 1e3  # microseconds
    fit = {}
    kernel, shape, mode = os.path.basename(path)[len("timeline_"):-len(".txt")].rsplit("_", 2)
    tasks_path = os.path.join(os.path.dirname(path), f"tasks_{shape}_{mode}.txt")
    if os.path.exists(tasks_path):
        fit = fit_tiles(tiles, read_tasks(tasks_path), int(kernel[0]))
    return {
        **fit,
        "file": os.path.basename(path),
        "tiles": len(tiles),
        "sms": sms,
        "span_us": span / 1e3,
        "tile_us": mean([e - s for spans in lanes.values() for s, e in spans]),
        "stage_us": mean([t[2] - t[1] for t in tiles]),
        "wait_us": mean(waits),
        "busy": busy / (span * sms * consumers),
        "start_us": mean([s - kernel_start for s in first_start.values()]),
        "tail_us": mean([kernel_end - e for e in last_end.values()]),
    }


def main(paths):
    if not paths:
        sys.exit(__doc__)
    print(f"{'timeline':44s} {'tiles':>6s} {'SMs':>4s} {'span us':>9s} {'tile us':>8s} "
          f"{'stage us':>8s} {'wait us':>8s} {'busy':>7s} {'start us':>8s} {'tail us':>8s} "
          f"{'fixed us':>8s} {'us/it':>6s} {'multi':>6s} {'multi us':>8s}")
    for path in paths:
        r = summarise(path)
        print(f"{r['file']:44s} {r['tiles']:6d} {r['sms']:4d} {r['span_us']:9.1f} "
              f"{r['tile_us']:8.2f} {r['stage_us']:8.2f} {r['wait_us']:8.2f} "
              f"{100 * r['busy']:6.1f}% {r['start_us']:8.2f} {r['tail_us']:8.1f} " +
              (f"{r['fixed_us']:8.2f} {r['iteration_us']:6.3f} {r['multi']:6d} "
               f"{r['multi_us']:8.1f}" if "fixed_us" in r
               else f"{'-':>8s} {'-':>6s} {'-':>6s} {'-':>8s}"))


if __name__ == "__main__":
    main(sys.argv[1:])
