"""The baseline of issue 8: the authors' Hugging Face FoX model (zhixuan-lin/forgetting-transformer,
carried from a fetched snapshot, never committed) generating greedily in bf16 on the same GPU,
for the same workloads as bench/run_device_serving.sh gives foxserve.

Each workload is one static batch of `--batch` prompts of `--prompt-tokens` random token ids,
prefilled together, then decoded `--new-tokens` steps with the reference's own cache
(FgateDynamicCache: K, V and log forget gates grown by torch.cat, token-shift states in place).
That is what `model.generate(do_sample=False)` runs, written as a loop for two reasons:
  - transformers 5's generate builds its own cache object (the new Cache API), which the
    reference's forward refuses (it asserts an FgateDynamicCache); the loop passes the
    reference's cache, with FgateCacheShim standing in for FgateDynamicCache, whose base class
    constructor changed in transformers 5;
  - generate computes logits for every prompt position (the reference has no logits_to_keep):
    B x T x 50257 values, 26 GB at 16 x 16k. The loop applies lm_head to the last position
    only, which favours the reference.
Printed and written (--json): prefill seconds (= time to first token of every request),
decode seconds, mean inter-token latency, generated tokens per second.

  python3 bench/hf_reference.py --ref-src .device/hfref --model /tmp/fox760m \
      --workload 64x2048+256 --workload 16x16384+128 --json out.json
"""
import argparse
import json
import sys
import time
import types


def stub_pytest():
    """token_shift.py imports pytest for its tests; the benchmark needs none of it."""
    try:
        import pytest  # noqa: F401
        return
    except ImportError:
        pass

    class Anything:
        def __getattr__(self, name):
            return Anything()

        def __call__(self, *args, **kwargs):
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return args[0]
            return Anything()

    module = types.ModuleType("pytest")
    module.__getattr__ = lambda name: Anything()
    sys.modules["pytest"] = module


class FgateCacheShim:
    """FgateDynamicCache's interface as the reference's forward uses it, without transformers'
    Cache base class."""

    def __init__(self):
        self.key_cache, self.value_cache, self.log_fgate_cache = [], [], []
        self.key_shift_cache, self.value_shift_cache = [], []

    def update_shift_cache(self, key_shift_state, value_shift_state, layer_idx):
        assert layer_idx == len(self.key_shift_cache)
        self.key_shift_cache.append(key_shift_state)
        self.value_shift_cache.append(value_shift_state)

    def __len__(self):
        return len(self.key_cache)

    def update(self, k, v, log_fgate, layer_idx, cache_kwargs=None):
        import torch
        if len(self.key_cache) <= layer_idx:
            self.key_cache.append(k)
            self.value_cache.append(v)
            self.log_fgate_cache.append(log_fgate)
        else:
            self.key_cache[layer_idx] = torch.cat([self.key_cache[layer_idx], k], dim=-2)
            self.value_cache[layer_idx] = torch.cat([self.value_cache[layer_idx], v], dim=-2)
            self.log_fgate_cache[layer_idx] = torch.cat(
                [self.log_fgate_cache[layer_idx], log_fgate], dim=-1)
        return self.key_cache[layer_idx], self.value_cache[layer_idx], self.log_fgate_cache[layer_idx]

    def get_seq_length(self, layer_idx=0):
        return 0 if len(self.key_cache) <= layer_idx else self.key_cache[layer_idx].shape[-2]


def load_model(ref_src, model_dir, acp_log_eps):
    import torch
    from safetensors.torch import load_file
    stub_pytest()
    sys.path.insert(0, ref_src)
    from forgetting_transformer.model.forgetting_transformer import (
        configuration_forgetting_transformer as conf_mod, modeling_forgetting_transformer as model_mod)
    model_mod.FgateDynamicCache = FgateCacheShim
    with open(f"{model_dir}/config.json") as f:
        raw = json.load(f)
    raw.pop("model_type", None)
    raw.pop("architectures", None)
    raw.pop("torch_dtype", None)
    raw.pop("transformers_version", None)
    raw["log_pruning_tolerance"] = acp_log_eps
    config = conf_mod.ForgettingTransformerConfig(**raw)
    try:
        with torch.device("cuda"):
            model = model_mod.ForgettingTransformerForCausalLM(config)
    except Exception as e:  # transformers 5 reads _tied_weights_keys as a mapping
        print(f"construction failed ({type(e).__name__}: {e}); retrying without tied-weight keys")
        model_mod.ForgettingTransformerForCausalLM._tied_weights_keys = None
        with torch.device("cuda"):
            model = model_mod.ForgettingTransformerForCausalLM(config)
    state = load_file(f"{model_dir}/model.safetensors", device="cuda")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise SystemExit(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    if missing:  # tied embeddings
        model.lm_head.weight = model.model.embeddings.weight
    return model.to(torch.bfloat16).eval()


def run(model, batch, prompt_tokens, new_tokens, seed):
    import torch
    g = torch.Generator(device="cpu").manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, prompt_tokens), generator=g).cuda()
    out = torch.empty(batch, new_tokens, dtype=torch.long, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        o = model.model(input_ids=ids, use_cache=True, return_dict=True, output_attentions=False,
                        output_hidden_states=False)
        cache = o.past_key_values
        nxt = model.lm_head(o.last_hidden_state[:, -1]).argmax(-1)
        out[:, 0] = nxt
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        for i in range(1, new_tokens):
            o = model.model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True,
                            return_dict=True, output_attentions=False, output_hidden_states=False)
            cache = o.past_key_values
            nxt = model.lm_head(o.last_hidden_state[:, -1]).argmax(-1)
            out[:, i] = nxt
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    del cache, o
    torch.cuda.empty_cache()
    return t1 - t0, t2 - t1, out[0].tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-src", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--workload", action="append", required=True,
                    help="BATCHxPROMPT+NEW, e.g. 64x2048+256")
    ap.add_argument("--acp-log-eps", type=float, default=None,
                    help="the reference's own ACP (log_pruning_tolerance); default off")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch
    t = time.perf_counter()
    model = load_model(args.ref_src, args.model, args.acp_log_eps)
    print(f"loaded in {time.perf_counter() - t:.1f} s on {torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}", flush=True)
    run(model, 2, 256, 4, args.seed)  # warm-up: Triton compiles, cuBLAS picks kernels
    rows = []
    print(f"{'workload':>14} {'prefill s':>10} {'decode s':>9} {'ITL ms':>7} {'gen tok/s':>10}")
    for w in args.workload:
        shape, new = w.split("+")
        batch, prompt = (int(x) for x in shape.split("x"))
        new = int(new)
        prefill_s, decode_s, first = run(model, batch, prompt, new, args.seed)
        total = prefill_s + decode_s
        row = dict(workload=w, batch=batch, prompt_tokens=prompt, new_tokens=new,
                   prefill_s=prefill_s, decode_s=decode_s,
                   itl_ms=1e3 * decode_s / max(new - 1, 1),
                   ttft_s=prefill_s, generated_tokens_per_s=batch * new / total,
                   first_request_tokens=first[:32],
                   peak_gib=torch.cuda.max_memory_allocated() / 2**30)
        rows.append(row)
        print(f"{w:>14} {prefill_s:10.2f} {decode_s:9.2f} {row['itl_ms']:7.1f} "
              f"{row['generated_tokens_per_s']:10.1f}   peak {row['peak_gib']:.1f} GiB", flush=True)
        torch.cuda.reset_peak_memory_stats()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
