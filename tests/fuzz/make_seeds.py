#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Run from anywhere: python3 tests/fuzz/make_seeds.py. Deterministic; the outputs are committed.
Needs protoc (protobuf-compiler) for the GenerateRequest seeds. Each seed is named after what it
exercises. The byte layouts follow the targets' ByteReader use (tests/fuzz/*_fuzzer.cc).
"""
import json
import os
import re
import struct
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- safetensors -------------------------------------------------------------------------------
def safetensors(tensors, metadata=None, pad=True, data_extra=b""):
    header = {}
    blob = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob + data_extra


def seeds_safetensors():
    f32 = struct.pack("<6f", 0, 1.5, -2, 3.25, float("inf"), 1e-30)
    write("safetensors", "valid_f32_bf16_i64", safetensors([
        ("a", "F32", [2, 3], f32),
        ("b", "BF16", [4], struct.pack("<4H", 0x3f80, 0xbf80, 0x7f80, 0x0001)),
        ("c", "I64", [1, 2], struct.pack("<2q", -1, 2**62)),
    ], metadata={"format": "pt"}))
    write("safetensors", "valid_f16_f64_bool_scalar", safetensors([
        ("h", "F16", [3], struct.pack("<3H", 0x3c00, 0x0001, 0x7c01)),
        ("d", "F64", [], struct.pack("<d", 1e300)),
        ("z", "BOOL", [0, 5], b""),
        ("u", "U8", [2], b"\x00\xff"),
        ("i8", "I8", [1], b"\x80"),
        ("i16", "I16", [1], b"\x00\x80"),
        ("i32", "I32", [1], b"\x01\x00\x00\x80"),
    ]))
    write("safetensors", "empty_header", struct.pack("<Q", 2) + b"{}")
    write("safetensors", "metadata_only", safetensors([], metadata={"k": "v", "x": ""}))
    write("safetensors", "truncated_data", safetensors([("a", "F32", [4], b"\0" * 16)])[:-5])
    write("safetensors", "bad_json", struct.pack("<Q", 9) + b'{"a": [1,')
    write("safetensors", "header_longer_than_file", struct.pack("<Q", 1 << 40) + b"{}")
    write("safetensors", "unknown_dtype", safetensors([("a", "F8_E4M3", [1], b"\0")]))
    write("safetensors", "overflow_shape", struct.pack("<Q", 80) + json.dumps(
        {"a": {"dtype": "F32", "shape": [2**62, 4], "data_offsets": [0, 0]}}).encode().ljust(80))
    write("safetensors", "offsets_reversed", struct.pack("<Q", 64) + json.dumps(
        {"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 0]}}).encode().ljust(64) + b"xy")
    write("safetensors", "duplicate_name", struct.pack("<Q", 128) + (
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}').ljust(128) + b"z")
    write("safetensors", "escaped_names", safetensors([
        ("\u00e9\\\"\n\u0000name", "U8", [1], b"q"), ("x" * 300, "U8", [1], b"r")]))
    write("safetensors", "non_object_root", struct.pack("<Q", 2) + b"[]")
    write("safetensors", "short_file", b"\x05\x00\x00")
    # The shipped test model's real header, with its data cut off.
    with open(os.path.join(ROOT, "tests/data/golden/fox-pro-tiny/model.safetensors"), "rb") as f:
        raw = f.read(1 << 16)
    n = struct.unpack("<Q", raw[:8])[0]
    write("safetensors", "fox_pro_tiny_header_truncated", raw[: 8 + n + 64])


# --- config.json ------------------------------------------------------------------------------
def seeds_model_config():
    for name in ("fox-pro-tiny", "fox-llama-tiny"):
        with open(os.path.join(ROOT, "tests/data/golden", name, "config.json"), "rb") as f:
            write("model_config", name.replace("-", "_"), f.read())
    with open(os.path.join(ROOT, "models/fox-pro-shakespeare/config.json"), "rb") as f:
        base = json.load(f)
    write("model_config", "fox_pro_shakespeare", json.dumps(base, indent=1))
    variants = {
        "eos_list": {"eos_token_id": [0, 1, 2]},
        "eos_out_of_range": {"eos_token_id": 10**9},
        "num_heads_not_divisor": {"num_heads": 7},
        "intermediate_null": {"intermediate_size": None, "hidden_ratio": 3.5},
        "rope_on": {"use_rope": True},
        "gqa": {"num_kv_heads": 2},
        "log_eps_positive": {"log_pruning_tolerance": 1.0},
        "string_size": {"hidden_size": "256"},
        "float_size": {"vocab_size": 512.5},
        "huge_vocab": {"vocab_size": 2**63 - 1},
        "fgate_bias_only": {"fgate_type": "bias_only", "hidden_act": "sigmoid"},
        "ogate_silu": {"ogate_act": "silu", "use_output_norm": False},
        "nan_eps": None,
    }
    for name, change in variants.items():
        c = dict(base)
        if change is None:
            text = json.dumps(c).replace('"norm_eps": ', '"norm_eps": NaN, "x": ', 1)
        else:
            c.update(change)
            text = json.dumps(c)
        write("model_config", name, text)
    write("model_config", "not_an_object", "[1, 2, 3]")
    write("model_config", "deep_nesting", "[" * 64 + "]" * 64)
    write("model_config", "wrong_model_type", '{"model_type": "llama"}')
    write("model_config", "empty", "")


# --- BPE --------------------------------------------------------------------------------------
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


B2U = bytes_to_unicode()
BPE_DIR = os.path.join(ROOT, "tests", "fuzz", "data", "bpe")
with open(os.path.join(BPE_DIR, "vocab.json"), encoding="utf-8") as f:
    VOCAB = json.load(f)
with open(os.path.join(BPE_DIR, "merges.txt"), encoding="utf-8") as f:
    MERGES = [tuple(l.split()) for l in f.read().splitlines()[1:] if l]
RANKS = {m: i for i, m in enumerate(MERGES)}
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bpe_ids(text_bytes):
    """Approximate GPT-2 encoding (ASCII-only pre-tokenization) of bytes; ids are all valid."""
    ids = []
    for word in PAT.findall(text_bytes.decode("latin-1")):
        sym = [B2U[b] for b in word.encode("latin-1")]
        while len(sym) > 1:
            pairs = [(RANKS.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(sym, sym[1:]))]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            sym = sym[:i] + [sym[i] + sym[i + 1]] + sym[i + 2:]
        ids += [VOCAB[s] for s in sym]
    return ids


def u16s(ids):
    return b"".join(struct.pack("<H", i) for i in ids)


TEXTS = {
    "english": "ROMEO: But, soft! what light through yonder window breaks? It's the east.",
    "unicode": "naïve café – “quoted” 日本語 😀 Ωmega",
    "whitespace": "a  b\t\tc\n\n\n   d \r\n",
    "contractions": "I'll we've they're she's don't 'tis",
    "digits": "1234567890 3.14159 -42 1e10",
    "special_name": "<|endoftext|> is text here",
    "json_escapes": "quote \" backslash \\ newline \n tab \t control \u0001 é",
}


def seeds_bpe():
    for name, text in TEXTS.items():
        write("bpe_tokenizer", "text_" + name, b"\x00" + text.encode())
    write("bpe_tokenizer", "text_invalid_utf8", b"\x00abc\xff\xfe\xc3(\xe2\x82\xf0\x9f\x98")
    write("bpe_tokenizer", "text_empty", b"\x00")
    write("bpe_tokenizer", "ids_valid", b"\x01" + u16s(bpe_ids(TEXTS["english"].encode())))
    write("bpe_tokenizer", "ids_out_of_range", b"\x01" + u16s([1, 2, 519, 496, 0xFFF3]))
    small_vocab = {B2U[b]: b for b in range(256)}
    small_vocab["Ġt"] = 256
    small_vocab["he"] = 257
    small_vocab["Ġthe"] = 258
    merges = "#version: 0.2\nĠ t\nh e\nĠt he\n"
    write("bpe_tokenizer", "files_valid", b"\x02" + json.dumps(small_vocab).encode() + b"\0" +
          merges.encode())
    write("bpe_tokenizer", "files_bad_merge", b"\x02" + json.dumps(small_vocab).encode() + b"\0" +
          "#version: 0.2\nĠ x y\nq z\n".encode())
    write("bpe_tokenizer", "files_missing_byte", b"\x02" + json.dumps({"a": 0}).encode() + b"\0")
    tok_json = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 259, "content": "<|endoftext|>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": small_vocab,
                  "merges": ["Ġ t", "h e", ["Ġt", "he"]]},
    }
    write("bpe_tokenizer", "tokenizer_json_valid", b"\x03" + json.dumps(tok_json).encode())
    write("bpe_tokenizer", "tokenizer_json_wordpiece", b"\x03" + json.dumps(
        {"model": {"type": "WordPiece", "vocab": {}}}).encode())


def seeds_sentencepiece():
    for name, text in TEXTS.items():
        write("sentencepiece", "text_" + name, b"\x00" + text.encode())
    write("sentencepiece", "text_invalid_utf8", b"\x00ab\xff\xc3(\xe2\x82")
    write("sentencepiece", "text_spm_space_char", "\x00a\u2581b c".encode())
    write("sentencepiece", "ids_range", b"\x01" + u16s(range(0, 410, 7)))
    write("sentencepiece", "ids_control_and_bytes", b"\x01" + u16s([0, 1, 2, 3, 4, 100, 200, 259]))
    write("sentencepiece", "ids_out_of_range", b"\x01" + u16s([5, 399, 400, 0xFFF1]))


def stream_seed(mode, stops, context, ids):
    out = bytes([mode, len(stops)])
    for s in stops:
        s = s.encode() if isinstance(s, str) else s
        out += bytes([len(s)]) + s
    out += bytes([len(context)]) + u16s(context)
    return out + u16s(ids)


def seeds_stream_decoder():
    eng = bpe_ids(TEXTS["english"].encode())
    write("stream_decoder", "bpe_no_stop", stream_seed(0, [], [], eng))
    write("stream_decoder", "bpe_stop_mid", stream_seed(0, ["light", "xyz"], [], eng))
    write("stream_decoder", "bpe_stop_across_tokens", stream_seed(0, ["soft! w"], [5], eng))
    # "é" and "😀" as single byte tokens, split across pushes, with a stop inside the emoji bytes.
    raw = "café 😀 end".encode()
    byte_ids = [VOCAB[B2U[b]] for b in raw]
    write("stream_decoder", "bpe_split_utf8", stream_seed(0, [], [], byte_ids))
    write("stream_decoder", "bpe_stop_invalid_bytes", stream_seed(0, [b"\x9f\x98"], [], byte_ids))
    write("stream_decoder", "bpe_out_of_vocab", stream_seed(0, ["e"], [], [100, 0xFFF9, 101]))
    escaped = json.dumps("é \"q\" 😀\n")[1:-1]
    esc_bytes = [VOCAB[B2U[b]] for b in escaped.encode()]
    write("stream_decoder", "json_escape_split", stream_seed(1, [], [], esc_bytes))
    write("stream_decoder", "json_escape_stop", stream_seed(1, ["😀"], [], esc_bytes))
    write("stream_decoder", "json_lone_surrogate", stream_seed(
        1, [], [], [VOCAB[B2U[b]] for b in b"a\\ud83d b \\udc00 \\u12"]))
    write("stream_decoder", "spm_ids", stream_seed(2, ["the"], [10, 20, 30], list(range(3, 320, 11))))
    write("stream_decoder", "spm_byte_pieces", stream_seed(2, [], [], [3 + 0xC3, 3 + 0xA9, 3 + 0x41]))


# --- GenerateRequest --------------------------------------------------------------------------
REQUESTS = {
    "token_ids_greedy": 'token_ids { ids: [1, 2, 3, 4] } max_new_tokens: 8',
    "text_sampling": 'text: "ROMEO: what light" max_new_tokens: 16 sampling { temperature: 0.8 '
                     'top_p: 0.9 top_k: 40 min_p: 0.05 seed: 7 repetition_penalty: 1.1 '
                     'presence_penalty: 0.5 frequency_penalty: -0.5 }',
    "stops_and_logprobs": 'text: "hello" max_new_tokens: 4 stop: ["\\n", "END"] '
                          'stop_token_ids: [0, 2] logprobs: 5 request_id: "req-1" ignore_eos: true',
    "empty_prompt": 'max_new_tokens: 4',
    "empty_text": 'text: "" max_new_tokens: 4',
    "zero_max_new": 'token_ids { ids: [1] }',
    "too_long_new": 'token_ids { ids: [1] } max_new_tokens: 4000000000',
    "bad_sampling": 'token_ids { ids: [1] } max_new_tokens: 1 sampling { temperature: -1 top_p: 0 }',
    "nan_temperature": 'token_ids { ids: [1] } max_new_tokens: 1 sampling { temperature: nan }',
    "id_outside_vocab": 'token_ids { ids: [1, 600, -3] } max_new_tokens: 1',
    "request_id_control": 'token_ids { ids: [1] } max_new_tokens: 1 request_id: "a\\nb"',
    "many_stops": 'text: "x" max_new_tokens: 1 ' + " ".join('stop: "s%d"' % i for i in range(20)),
    "empty_stop": 'text: "x" max_new_tokens: 1 stop: ""',
    "logprobs_huge": 'token_ids { ids: [1] } max_new_tokens: 1 logprobs: 100000',
    "invalid_utf8_text": None,
    "kv_pool_too_small": 'token_ids { ids: [1] } max_new_tokens: 1000',
}


def seeds_generate_request():
    proto_dir = os.path.join(ROOT, "proto")
    for name, text in REQUESTS.items():
        if text is None:
            # Field 1 (text) with invalid UTF-8: protobuf's parser refuses it for proto3 strings.
            data = b"\x0a\x03a\xffb\x18\x04"
        else:
            data = subprocess.run(
                ["protoc", "--proto_path=" + proto_dir,
                 "--encode=foxserve.v1.GenerateRequest", "foxserve/v1/generation.proto"],
                input=text.encode(), capture_output=True, check=True).stdout
        write("generate_request", name, data)
    write("generate_request", "garbage", b"\xff\xff\xff\xff\x0f")


if __name__ == "__main__":
    seeds_safetensors()
    seeds_model_config()
    seeds_bpe()
    seeds_sentencepiece()
    seeds_stream_decoder()
    seeds_generate_request()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))
