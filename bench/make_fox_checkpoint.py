"""Writes a FoX (Pro) checkpoint with random weights in the official format, for benchmarks:
the 760M shape of the released models by default (hidden 1536, 24 layers, 24 heads of 64,
hidden_ratio 3.5, GPT-2 vocabulary), BF16.

The forget gates follow the decay mix of issue 5: per head a decay time tau log-uniform in
[1, 1e4] tokens, bias = -log(expm1(1 / tau)), and a data-dependent part of standard deviation
0.5 on the unit-RMS normed input (weight std 0.5 / sqrt(hidden)). q_norm and k_norm weights are 1,
so |q| = |k| = sqrt(64) and U = 8, as in the attention benchmark.

  python3 bench/make_fox_checkpoint.py --out DIR [--hidden 1536 --layers 24 --heads 24]
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--heads", type=int, default=24)
    ap.add_argument("--hidden-ratio", type=float, default=3.5)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    D, H, L, V = args.hidden, args.heads, args.layers, args.vocab
    inter = 256 * ((int(D * args.hidden_ratio * 2 / 3) + 255) // 256)
    dev = "cuda" if torch.cuda.is_available() else "cpu"

    def normal(*shape, std=0.02):
        return (torch.randn(*shape, device=dev) * std).to(torch.bfloat16).cpu()

    def ones(n):
        return torch.ones(n, dtype=torch.bfloat16)

    t = {"model.embeddings.weight": normal(V, D), "model.norm.weight": ones(D),
         "lm_head.weight": normal(V, D)}
    for l in range(L):
        p = f"model.layers.{l}."
        a = p + "attn."
        tau = 10 ** (torch.rand(H) * 4)
        t[p + "attn_norm.weight"] = ones(D)
        t[a + "q_proj.weight"] = normal(D, D)
        t[a + "k_proj.linear.weight"] = normal(D, D)
        t[a + "k_proj.shift_proj.weight"] = normal(H, D)
        t[a + "v_proj.linear.weight"] = normal(D, D)
        t[a + "v_proj.shift_proj.weight"] = normal(H, D)
        t[a + "fgate_proj.weight"] = normal(H, D, std=0.5 / math.sqrt(D))
        t[a + "fgate_proj.bias"] = (-torch.log(torch.expm1(1.0 / tau))).to(torch.bfloat16)
        t[a + "q_norm.weight"] = ones(D)
        t[a + "k_norm.weight"] = ones(D)
        t[a + "ogate_proj.weight"] = normal(D, D)
        t[a + "output_norm.weight"] = ones(D)
        t[a + "o_proj.weight"] = normal(D, D, std=0.02 / math.sqrt(2 * L))
        t[p + "mlp_norm.weight"] = ones(D)
        t[p + "mlp.gate_proj.weight"] = normal(2 * inter, D)
        t[p + "mlp.down_proj.weight"] = normal(D, inter, std=0.02 / math.sqrt(2 * L))
    os.makedirs(args.out, exist_ok=True)
    save_file(t, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "model_type": "forgetting_transformer-project_fox", "vocab_size": V, "hidden_size": D,
        "num_hidden_layers": L, "num_heads": H, "num_kv_heads": None, "hidden_ratio": args.hidden_ratio,
        "intermediate_size": None, "hidden_act": "swish", "norm_eps": 1e-6, "fgate_type": "full",
        "use_output_gate": True, "ogate_act": "sigmoid", "use_output_norm": True, "qk_norm": True,
        "qk_norm_share_param_across_head": False, "use_k_shift": True, "use_v_shift": True,
        "use_rope": False, "tie_word_embeddings": False, "log_pruning_tolerance": -10.0,
        "max_position_embeddings": 65536, "bos_token_id": 50256, "eos_token_id": 50256,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    params = sum(v.numel() for v in t.values())
    print(f"wrote {args.out}: {params / 1e6:.1f}M parameters, MLP width {inter}")


if __name__ == "__main__":
    main()
