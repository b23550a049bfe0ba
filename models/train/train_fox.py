"""Trains the shipped FoX (Pro) model on Tiny Shakespeare (runs on the device machine).

  python3 models/train/train_fox.py --tokenizer DIR/tokenizer.model --out OUT [--max-steps 1000]

Reads models/corpus/tinyshakespeare.txt, splits it 90/10 by lines (the first 90% train), encodes
it with the SentencePiece model, trains with bf16 autocast on random 1024-token windows that
start with BOS, evaluates the validation split every --eval-every steps and keeps the best
weights. Writes OUT/config.json (official format), OUT/model.safetensors (BF16), OUT/train_log.csv,
OUT/metrics.json and OUT/eval_slice.json (the first 512 validation tokens and the float32 loss of
the saved BF16 weights on them, which the C++ engine must reproduce).
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import sentencepiece as spm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fox_torch import FoxProModel, official_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def split_corpus(path):
    """First 90% of the lines for training, the rest for validation (the C++ test agrees)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    cut = int(len(lines) * 0.9)
    return "\n".join(lines[:cut]) + "\n", "\n".join(lines[cut:])


def save_checkpoint(tensors, out, max_shard_bytes=15 << 20):
    """model.safetensors, or shards plus model.safetensors.index.json when it would be larger."""
    sizes = {k: v.numel() * v.element_size() for k, v in tensors.items()}
    if sum(sizes.values()) <= max_shard_bytes:
        save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
        return
    shards, current, current_size = [], {}, 0
    for k, v in tensors.items():
        if current and current_size + sizes[k] > max_shard_bytes:
            shards.append(current)
            current, current_size = {}, 0
        current[k] = v
        current_size += sizes[k]
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(out, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}, f, indent=1)


def progress(step, total, loss, start):
    width = 30
    done = int(width * step / total)
    rate = step / max(1e-9, time.time() - start)
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] step {step}/{total} "
                     f"loss {loss:.3f} {rate:.1f} it/s")
    sys.stderr.flush()


@torch.no_grad()
def evaluate(model, windows, batch):
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        x = windows[i:i + batch].cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten(), reduction="sum")
        total += loss.item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--hidden-ratio", type=float, default=3.5)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.35)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    start_all = time.time()

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    bos, eos = sp.bos_id(), sp.eos_id()
    train_text, val_text = split_corpus(os.path.join(REPO, "models/corpus/tinyshakespeare.txt"))
    train_ids = torch.tensor(sp.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(sp.encode(val_text), dtype=torch.long)
    print(f"vocab {sp.get_piece_size()}, train {len(train_text)} chars -> {len(train_ids)} tokens, "
          f"val {len(val_text)} chars -> {len(val_ids)} tokens", flush=True)

    cfg = official_config(sp.get_piece_size(), args.hidden, args.layers, args.heads,
                          args.hidden_ratio, bos, eos, sp.pad_id() if sp.pad_id() >= 0 else None)
    cfg["max_position_embeddings"] = 2 * args.context
    model = FoxProModel(cfg, dropout=args.dropout).cuda()
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters {params / 1e6:.2f}M", flush=True)

    T = args.context
    # Validation windows: [BOS] + consecutive chunks of T tokens of the validation split.
    val_windows = torch.stack([torch.cat([torch.tensor([bos]), val_ids[i:i + T]])
                               for i in range(0, len(val_ids) - T, T)])

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=True)
    warmup = 100

    log_path = os.path.join(args.out, "train_log.csv")
    log = open(log_path, "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "seconds", "train_loss", "val_loss", "lr"])
    best = (float("inf"), None, 0)
    step, start, loss_ema = 0, time.time(), None
    # Cosine over --max-steps; --seconds only caps the run.
    while step < args.max_steps and time.time() - start < args.seconds:
        frac = step / args.max_steps
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(train_ids) - T, (args.batch,))
        x = torch.stack([torch.cat([torch.tensor([bos]), train_ids[s:s + T]]) for s in starts]).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 10 == 0:
            progress(step, args.max_steps, loss_ema, start)
        if step % args.eval_every == 0:
            val = evaluate(model, val_windows, args.batch)
            writer.writerow([step, f"{time.time() - start:.1f}", f"{loss_ema:.4f}", f"{val:.4f}", f"{lr:.2e}"])
            log.flush()
            if val < best[0]:
                best = (val, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
    train_seconds = time.time() - start
    sys.stderr.write("\n")
    log.close()

    # - Save the best weights in BF16, in the official layout.
    model.load_state_dict(best[1])
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(tensors, args.out)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    # - Float32 evaluation of exactly the saved (BF16-rounded) weights.
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.float().eval()
    with torch.no_grad():
        def fp32_loss(windows):
            total, count = 0.0, 0
            for i in range(0, len(windows), 8):
                x = windows[i:i + 8].cuda()
                logits = model(x[:, :-1])
                total += F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="sum").item()
                count += x[:, 1:].numel()
            return total / count
        val_loss = fp32_loss(val_windows)
        train_eval = torch.stack([torch.cat([torch.tensor([bos]), train_ids[i:i + T]])
                                  for i in range(0, min(len(train_ids) - T, 64 * T), T)])
        train_loss = fp32_loss(train_eval)
        slice_ids = torch.cat([torch.tensor([bos]), val_ids[:511]]).unsqueeze(0)
        slice_loss = fp32_loss(slice_ids)
    val_chars_per_token = len(val_text) / len(val_ids)
    metrics = {
        "parameters": params,
        "vocab_size": sp.get_piece_size(),
        "steps": step,
        "best_step": best[2],
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - start_all, 1),
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
        "train_loss": train_loss,
        "train_perplexity": math.exp(train_loss),
        "val_chars_per_token": val_chars_per_token,
        "val_bits_per_char": val_loss / math.log(2) / val_chars_per_token,
        "gpu": torch.cuda.get_device_name(0),
        "args": vars(args),
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    with open(os.path.join(args.out, "eval_slice.json"), "w") as f:
        json.dump({"input_ids": slice_ids[0].tolist(), "loss": slice_loss,
                   "note": "mean cross-entropy (nats) of predicting input_ids[1:] from the "
                           "prefixes, float32 with the BF16 weights of model.safetensors"}, f)
    print(json.dumps({k: v for k, v in metrics.items() if k != "args"}), flush=True)


if __name__ == "__main__":
    main()
