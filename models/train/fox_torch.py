"""FoX (Pro) in PyTorch, written from shared/docs/FOX.md (sections 1 and 2) for training the
shipped model. Parameter names follow the official checkpoint format, so a state_dict saves
as a foxserve/Hugging Face checkpoint directly.

Attention is exact softmax attention with the forget-gate decay c_t - c_j added to the scores,
through torch's scaled_dot_product_attention with an additive mask.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x, weight, eps):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class ShiftLinear(nn.Module):
    """k (or v) with the data-dependent token shift: x_t = a x~_{t-1} + (1 - a) x~_t per head."""

    def __init__(self, dim, heads):
        super().__init__()
        self.linear = nn.Linear(dim, dim, bias=False)
        self.shift_proj = nn.Linear(dim, heads, bias=False)
        self.heads = heads

    def forward(self, a):
        b, t, d = a.shape
        cur = self.linear(a).view(b, t, self.heads, d // self.heads)
        prev = F.pad(cur, (0, 0, 0, 0, 1, 0))[:, :t]  # x~_{-1} = 0
        alpha = torch.sigmoid(self.shift_proj(a).float()).unsqueeze(-1)
        return (alpha * prev.float() + (1 - alpha) * cur.float()).to(cur.dtype).view(b, t, d)


class ForgettingAttention(nn.Module):
    def __init__(self, cfg, decay_times):
        super().__init__()
        d, h = cfg["hidden_size"], cfg["num_heads"]
        self.h, self.dh = h, d // h
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = ShiftLinear(d, h)
        self.v_proj = ShiftLinear(d, h)
        self.fgate_proj = nn.Linear(d, h, bias=True)
        self.q_norm = nn.Module()
        self.q_norm.weight = nn.Parameter(torch.ones(d))
        self.k_norm = nn.Module()
        self.k_norm.weight = nn.Parameter(torch.ones(d))
        self.ogate_proj = nn.Linear(d, d, bias=False)
        self.output_norm = nn.Module()
        self.output_norm.weight = nn.Parameter(torch.ones(d))
        self.o_proj = nn.Linear(d, d, bias=False)
        self.norm_eps = cfg["norm_eps"]
        # Forget-gate biases spread over decay times (tau = -1 / log sigmoid(b)), so that heads
        # start out forgetting at different rates; the gate stays data-dependent ("full").
        with torch.no_grad():
            tau = torch.tensor(decay_times, dtype=torch.float32)
            self.fgate_proj.bias.copy_(-torch.log(torch.expm1(1.0 / tau)))
        self.attn_dropout = 0.0

    def forward(self, a):
        b, t, d = a.shape
        h, dh = self.h, self.dh
        q = self.q_proj(a).view(b, t, h, dh)
        k = self.k_proj(a).view(b, t, h, dh)
        v = self.v_proj(a).view(b, t, h, dh)
        q = rms_norm(q, self.q_norm.weight.view(h, dh), 1e-5)
        k = rms_norm(k, self.k_norm.weight.view(h, dh), 1e-5)
        log_f = F.logsigmoid(self.fgate_proj(a).float())  # [b, t, h]
        c = torch.cumsum(log_f, dim=1).transpose(1, 2)  # [b, h, t], float32
        decay = c.unsqueeze(-1) - c.unsqueeze(-2)  # c_i - c_j
        causal = torch.ones(t, t, dtype=torch.bool, device=a.device).tril()
        mask = decay.masked_fill(~causal, float("-inf")).to(q.dtype)
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
            dropout_p=self.attn_dropout if self.training else 0.0, scale=1.0 / math.sqrt(dh))
        o = o.transpose(1, 2)  # [b, t, h, dh]
        o = rms_norm(o, self.output_norm.weight.view(h, dh), self.norm_eps)
        o = o * torch.sigmoid(self.ogate_proj(a).float()).to(o.dtype).view(b, t, h, dh)
        return self.o_proj(o.reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, d, inter):
        super().__init__()
        self.gate_proj = nn.Linear(d, 2 * inter, bias=False)
        self.down_proj = nn.Linear(inter, d, bias=False)

    def forward(self, x):
        g, u = self.gate_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(g) * u)


class Block(nn.Module):
    def __init__(self, cfg, decay_times, dropout):
        super().__init__()
        d = cfg["hidden_size"]
        self.attn_norm = RMSNorm(d, cfg["norm_eps"])
        self.attn = ForgettingAttention(cfg, decay_times)
        self.attn.attn_dropout = dropout
        self.mlp_norm = RMSNorm(d, cfg["norm_eps"])
        self.mlp = Mlp(d, mlp_width(d, cfg["hidden_ratio"]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.dropout(self.attn(self.attn_norm(x)))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class FoxProModel(nn.Module):
    """Parameter names: model.embeddings, model.layers.L.*, model.norm, lm_head (FOX.md 1)."""

    def __init__(self, cfg, dropout=0.0):
        super().__init__()
        self.cfg = cfg
        h, layers = cfg["num_heads"], cfg["num_hidden_layers"]
        self.model = nn.Module()
        self.model.embeddings = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        # In every layer, initial decay times log-uniform in [2, 2000] tokens over the heads.
        times = [2.0 * (1000.0 ** (i / max(1, h - 1))) for i in range(h)]
        self.model.layers = nn.ModuleList([Block(cfg, times, dropout) for _ in range(layers)])
        self.model.norm = RMSNorm(cfg["hidden_size"], cfg["norm_eps"])
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
        for layer in self.model.layers:  # scaled residual projections (GPT-2)
            std = 0.02 / math.sqrt(2 * layers)
            nn.init.normal_(layer.attn.o_proj.weight, std=std)
            nn.init.normal_(layer.mlp.down_proj.weight, std=std)

    def forward(self, ids):
        x = self.model.embeddings(ids)
        for layer in self.model.layers:
            x = layer(x)
        return self.lm_head(self.model.norm(x))


def mlp_width(hidden, hidden_ratio):
    """The reference's MLP width when intermediate_size is null (FOX.md 1)."""
    inter = int(hidden * hidden_ratio * 2 / 3)
    return 256 * ((inter + 255) // 256)


def official_config(vocab_size, hidden, layers, heads, hidden_ratio, bos, eos, pad):
    return {
        "model_type": "forgetting_transformer-project_fox",
        "architectures": ["ForgettingTransformerForCausalLM"],
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_heads": heads,
        "num_kv_heads": None,
        "hidden_ratio": hidden_ratio,
        "intermediate_size": None,
        "hidden_act": "swish",
        "norm_eps": 1e-6,
        "fgate_type": "full",
        "fgate_bias_init": False,
        "decay_time_min": None,
        "decay_time_max": None,
        "use_output_gate": True,
        "ogate_act": "sigmoid",
        "use_output_norm": True,
        "qk_norm": True,
        "qk_norm_share_param_across_head": False,
        "use_k_shift": True,
        "use_v_shift": True,
        "use_rope": False,
        "rope_base": 500000.0,
        "window_size": None,
        "attention_bias": False,
        "elementwise_affine": True,
        "tie_word_embeddings": False,
        "log_pruning_tolerance": -10.0,
        "max_position_embeddings": 2048,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "initializer_range": 0.02,
        "fuse_norm": True,
        "fuse_cross_entropy": False,
        "use_cache": True,
    }
