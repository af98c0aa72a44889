#!/usr/bin/python3
"""Convert a llama2.c legacy checkpoint (+ its tok*.bin tokenizer) into an incnn / Hugging Face
llama checkpoint directory (config.json, model.safetensors, tokenizer.model). numpy only.

    /usr/bin/python3 training/llama2c_to_hf.py MODEL.bin TOKENIZER.bin OUT_DIR

llama2.c legacy format: 7 int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size (negative: an untied classifier follows the weights), seq_len), then fp32 weights:
token_embedding [V,d], rms_att [L,d], wq [L,d,d], wk [L,kv,d], wv [L,kv,d], wo [L,d,d],
rms_ffn [L,d], w1 [L,h,d], w2 [L,d,h], w3 [L,h,d], rms_final [d], freq_cis_real [T,hd/2],
freq_cis_imag [T,hd/2] (ignored), then wcls [V,d] when untied.

llama2.c rotates interleaved pairs (2i, 2i+1) of each head; Hugging Face rotates the half-split
pairs (i, i+hd/2). As in HF's convert_llama_weights_to_hf.py, the rows of wq and wk are permuted
per head so that the converted model computes the same function (q.k is invariant under the
same permutation of q and k rows; v and o are untouched).

The tokenizer (int32 max_token_length, then per token: float32 score, int32 len, bytes) is
written as a sentencepiece BPE ModelProto with byte fallback (hand-encoded protobuf).
"""

import argparse
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import incnn_ckpt as ck  # noqa: E402


def read_llama2c(path):
    """Return (header dict, {llama2.c name: np.ndarray})."""
    with open(path, "rb") as f:
        buf = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", buf[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    kv_dim = hd * n_kv
    data = np.frombuffer(buf, dtype="<f4", offset=28)
    shapes = [
        ("token_embedding", (vocab, dim)),
        ("rms_att", (n_layers, dim)),
        ("wq", (n_layers, dim, dim)),
        ("wk", (n_layers, kv_dim, dim)),
        ("wv", (n_layers, kv_dim, dim)),
        ("wo", (n_layers, dim, dim)),
        ("rms_ffn", (n_layers, dim)),
        ("w1", (n_layers, hidden, dim)),
        ("w2", (n_layers, dim, hidden)),
        ("w3", (n_layers, hidden, dim)),
        ("rms_final", (dim,)),
        ("freq_cis_real", (seq_len, hd // 2)),
        ("freq_cis_imag", (seq_len, hd // 2)),
    ]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    w = {}
    off = 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        if off + n > data.size:
            raise ValueError("%s: file too short for %s" % (path, name))
        w[name] = data[off:off + n].reshape(shape).astype(np.float32)
        off += n
    if off != data.size:
        raise ValueError("%s: %d trailing floats" % (path, data.size - off))
    hdr = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv, vocab_size=vocab, seq_len=seq_len, shared=shared)
    return hdr, w


def permute_rotary(w, n_heads):
    """HF's `permute`: within each head, rows (2i, 2i+1) -> (i, i + hd/2)."""
    rows, cols = w.shape
    return (w.reshape(n_heads, rows // n_heads // 2, 2, cols)
             .transpose(0, 2, 1, 3).reshape(rows, cols))


def convert_weights(hdr, w):
    """Return (config dict, {HF name: np.ndarray})."""
    L = hdr["n_layers"]
    t = {"model.embed_tokens.weight": w["token_embedding"], "model.norm.weight": w["rms_final"]}
    for i in range(L):
        p = "model.layers.%d." % i
        t[p + "input_layernorm.weight"] = w["rms_att"][i]
        t[p + "post_attention_layernorm.weight"] = w["rms_ffn"][i]
        t[p + "self_attn.q_proj.weight"] = permute_rotary(w["wq"][i], hdr["n_heads"])
        t[p + "self_attn.k_proj.weight"] = permute_rotary(w["wk"][i], hdr["n_kv_heads"])
        t[p + "self_attn.v_proj.weight"] = w["wv"][i]
        t[p + "self_attn.o_proj.weight"] = w["wo"][i]
        t[p + "mlp.gate_proj.weight"] = w["w1"][i]
        t[p + "mlp.down_proj.weight"] = w["w2"][i]
        t[p + "mlp.up_proj.weight"] = w["w3"][i]
    if not hdr["shared"]:
        t["lm_head.weight"] = w["wcls"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": hdr["vocab_size"],
        "hidden_size": hdr["dim"],
        "intermediate_size": hdr["hidden_dim"],
        "num_hidden_layers": L,
        "num_attention_heads": hdr["n_heads"],
        "num_key_value_heads": hdr["n_kv_heads"],
        "max_position_embeddings": hdr["seq_len"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": bool(hdr["shared"]),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "incnn_position": "rope",
        "incnn_attention": "causal",
    }
    return config, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}


def read_llama2c_tokenizer(path, vocab_size):
    with open(path, "rb") as f:
        buf = f.read()
    off = 4  # int32 max_token_length
    toks = []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", buf, off)
        off += 8
        toks.append((buf[off:off + n], score))
        off += n
    return toks


def tokenizer_model_bytes(toks):
    """Build a serialized sentencepiece ModelProto from llama2.c (bytes, score) tokens.

    llama2.c's export wrote sp.id_to_piece(i) with '▁' replaced by ' ' and BOS/EOS as
    '\\n<s>\\n' / '\\n</s>\\n'; undo both. Layout: 0 <unk>, 1 <s>, 2 </s>, then <0xNN> bytes,
    then merged pieces."""
    out = bytearray()
    n = len(toks)
    for i, (raw, score) in enumerate(toks):
        text = raw.decode("utf-8")
        if i == 0:
            piece, typ, score = "<unk>", ck.PIECE_UNKNOWN, 0.0
        elif i == 1:
            piece, typ, score = "<s>", ck.PIECE_CONTROL, 0.0
        elif i == 2:
            piece, typ, score = "</s>", ck.PIECE_CONTROL, 0.0
        elif len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            piece, typ = text, ck.PIECE_BYTE
        else:
            piece, typ = text.replace(" ", "\u2581"), ck.PIECE_NORMAL
        msg = ck.pb_bytes(1, piece) + ck.pb_float(2, score) + ck.pb_varint(3, typ)
        out += ck.pb_bytes(1, msg)
    trainer = (
        ck.pb_varint(3, 2)  # model_type: BPE
        + ck.pb_varint(4, n)  # vocab_size
        + ck.pb_varint(25, 1)  # split_digits
        + ck.pb_varint(26, 1)  # allow_whitespace_only_pieces
        + ck.pb_varint(35, 1)  # byte_fallback
        + ck.pb_varint(40, 0)  # unk_id
        + ck.pb_varint(41, 1)  # bos_id
        + ck.pb_varint(42, 2)  # eos_id
        + ck.pb_varint(43, -1)  # pad_id
    )
    normalizer = (
        ck.pb_bytes(1, "identity")
        + ck.pb_varint(3, 1)  # add_dummy_prefix
        + ck.pb_varint(4, 0)  # remove_extra_whitespaces
        + ck.pb_varint(5, 1)  # escape_whitespaces
    )
    out += ck.pb_bytes(2, trainer)
    out += ck.pb_bytes(3, normalizer)
    return bytes(out)


def convert(model_bin, tok_bin, out_dir):
    hdr, w = read_llama2c(model_bin)
    config, tensors = convert_weights(hdr, w)
    ck.save_checkpoint(out_dir, config, tensors,
                       metadata={"source": "llama2.c:" + os.path.basename(model_bin)})
    if tok_bin:
        toks = read_llama2c_tokenizer(tok_bin, hdr["vocab_size"])
        with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
            f.write(tokenizer_model_bytes(toks))
    return config


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_bin")
    ap.add_argument("tokenizer_bin")
    ap.add_argument("out_dir")
    a = ap.parse_args(argv)
    convert(a.model_bin, a.tokenizer_bin, a.out_dir)
    print("wrote", a.out_dir)


if __name__ == "__main__":
    main()
