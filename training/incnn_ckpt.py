"""Checkpoint I/O for incnn (numpy only; no `safetensors` / `transformers` packages needed).

A checkpoint is a directory with ``config.json`` + ``model.safetensors`` (+ optional
``tokenizer.model``); see docs/checkpoint-format.md for the layout.

safetensors file layout (https://github.com/huggingface/safetensors):
  * 8 bytes: little-endian u64 N, the size of the JSON header;
  * N bytes: UTF-8 JSON ``{name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
    "__metadata__": {str: str}}`` (padded with spaces to a multiple of 8 bytes);
  * the data buffer; offsets are relative to its start; data is little-endian, row-major.

This module also holds a minimal sentencepiece ``ModelProto`` reader/writer (hand-encoded
protobuf) and a decoder, so that tests can turn ids into text without the sentencepiece package.
"""

import json
import os
import struct

import numpy as np

# --------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def save_safetensors(path, tensors, metadata=None):
    """Write ``{name: np.ndarray}`` to ``path``. Tensors are stored in sorted name order."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if arr.dtype not in _NAMES:
            raise TypeError("unsupported dtype %s for tensor %s" % (arr.dtype, name))
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": _NAMES[arr.dtype],
            "shape": [int(s) for s in arr.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    meta = {"format": "pt"}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    header["__metadata__"] = meta
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def load_safetensors(path, widen=True):
    """Read a safetensors file into ``{name: np.ndarray}`` (plus ``metadata`` via
    :func:`load_safetensors_metadata`). With ``widen``, F16/BF16 become float32."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        raw = buf[base + b:base + e]
        dt = info["dtype"]
        if dt == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32).reshape(shape)
            if not widen:
                raise TypeError("BF16 needs widen=True (numpy has no bfloat16)")
        elif dt in _DTYPES:
            arr = np.frombuffer(raw, dtype=_DTYPES[dt]).reshape(shape).copy()
            if widen and dt == "F16":
                arr = arr.astype(np.float32)
        else:
            raise TypeError("unsupported safetensors dtype %s (%s)" % (dt, name))
        out[name] = arr.astype(arr.dtype.newbyteorder("="))
    return out


def load_safetensors_metadata(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    return header.get("__metadata__", {})


# --------------------------------------------------------------------------------------------
# config helpers
# --------------------------------------------------------------------------------------------


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def save_config(model_dir, config):
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def save_checkpoint(model_dir, config, tensors, metadata=None):
    os.makedirs(model_dir, exist_ok=True)
    save_config(model_dir, config)
    save_safetensors(os.path.join(model_dir, "model.safetensors"),
                     {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()},
                     metadata)


def load_checkpoint(model_dir):
    return load_config(model_dir), load_safetensors(os.path.join(model_dir, "model.safetensors"))


def is_classifier(config):
    return config["architectures"][0].endswith(("ForSequenceClassification",
                                                 "ForTokenClassification"))


def num_labels(config):
    if "id2label" in config:
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


def window_of(r, layer):
    """Layer `layer`'s attention window (0: global), as docs/checkpoint-format.md says."""
    if r["global_every"] and layer % r["global_every"] == 0:
        return 0
    return r["window"]


def resolved(config):
    """Return a dict of the normalized hyper-parameters, with every default of
    docs/checkpoint-format.md filled in. Raises ValueError on an unsupported config."""
    fam = config.get("model_type")
    if fam not in ("opt", "llama"):
        raise ValueError("model_type must be 'opt' or 'llama', got %r" % (fam,))
    arch = config.get("architectures", [None])[0]
    allowed = {
        "opt": ("OPTForCausalLM", "OPTForSequenceClassification"),
        "llama": ("LlamaForCausalLM", "LlamaForSequenceClassification",
                  "LlamaForTokenClassification"),
    }[fam]
    if arch not in allowed:
        raise ValueError("architectures[0] must be one of %s, got %r" % (allowed, arch))
    r = {
        "family": fam,
        "classifier": arch.endswith(("ForSequenceClassification", "ForTokenClassification")),
        "token": arch.endswith("ForTokenClassification"),
        "vocab": int(config["vocab_size"]),
        "hidden": int(config["hidden_size"]),
        "layers": int(config["num_hidden_layers"]),
        "heads": int(config["num_attention_heads"]),
        "max_pos": int(config["max_position_embeddings"]),
        "position": config.get("incnn_position", "learned" if fam == "opt" else "rope"),
        "attention": config.get("incnn_attention", "causal"),
        "pool": config.get("incnn_pool", "last"),
        "vq": list(config.get("incnn_vq") or []),
        "window": int(config.get("sliding_window") or 0)
        if config.get("use_sliding_window", True) else 0,
        "global_every": int(config.get("global_attn_every_n_layers") or 0),
    }
    if r["classifier"]:
        r["labels"] = num_labels(config)
    if fam == "opt":
        if not config.get("do_layer_norm_before", True):
            raise ValueError("opt: do_layer_norm_before must be true")
        if int(config.get("word_embed_proj_dim", r["hidden"])) != r["hidden"]:
            raise ValueError("opt: word_embed_proj_dim must equal hidden_size")
        act = config.get("activation_function", "relu")
        act = "gelu_new" if act == "gelu_pytorch_tanh" else act
        if act not in ("relu", "gelu", "gelu_new", "geglu", "swiglu"):
            raise ValueError("opt: activation_function must be relu, gelu, gelu_new, geglu or "
                             "swiglu")
        r.update(ffn=int(config["ffn_dim"]), act=act, bias=bool(config.get("enable_bias", True)),
                 eps=float(config.get("layer_norm_eps", 1e-5)), kv_heads=r["heads"])
    else:
        if config.get("hidden_act", "silu") != "silu":
            raise ValueError("llama: hidden_act must be silu")
        r.update(ffn=int(config["intermediate_size"]),
                 kv_heads=int(config.get("num_key_value_heads") or r["heads"]),
                 eps=float(config.get("rms_norm_eps", 1e-6)),
                 rope_theta=float(config.get("rope_theta", 10000.0)),
                 tied=bool(config.get("tie_word_embeddings", False)))
    if r["position"] not in ("learned", "rope", "none"):
        raise ValueError("incnn_position must be learned, rope or none")
    if r["position"] == "learned" and fam != "opt":
        raise ValueError("incnn_position 'learned' is only defined for opt")
    if r["attention"] not in ("causal", "bidirectional"):
        raise ValueError("incnn_attention must be causal or bidirectional")
    if r["pool"] not in ("last", "mean"):
        raise ValueError("incnn_pool must be last or mean")
    if r["hidden"] % r["heads"] or r["heads"] % r["kv_heads"]:
        raise ValueError("hidden_size % heads and heads % kv_heads must be 0")
    if r["window"] < 0 or r["global_every"] < 0:
        raise ValueError("sliding_window and global_attn_every_n_layers must be >= 0")
    r["head_dim"] = r["hidden"] // r["heads"]
    if r["position"] == "rope" and r["head_dim"] % 2:
        raise ValueError("rope needs an even head_dim")
    check_vq_sites(r)
    return r


def check_vq_sites(r):
    """Raises ValueError unless every VQ site of resolved config `r` names a site, a layer and
    a group count that divides the width."""
    for s in r["vq"]:
        if s["site"] not in ("attn_out", "block_out"):
            raise ValueError("VQ site must be attn_out or block_out")
        if not 0 <= int(s["layer"]) < r["layers"] or r["hidden"] % int(s["groups"]):
            raise ValueError("bad VQ site %r" % (s,))


# --------------------------------------------------------------------------------------------
# sentencepiece ModelProto (hand-encoded protobuf)
# --------------------------------------------------------------------------------------------
# ModelProto:   1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
# SentencePiece: 1 piece (string), 2 score (float), 3 type (enum)
PIECE_NORMAL, PIECE_UNKNOWN, PIECE_CONTROL, PIECE_USER_DEFINED, PIECE_UNUSED, PIECE_BYTE = 1, 2, 3, 4, 5, 6


def _varint(v):
    if v < 0:
        v += 1 << 64  # int32/int64 negatives: 10-byte two's complement varint
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field, v):
    return _varint(field << 3 | 0) + _varint(int(v))


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def pb_float(field, x):
    return _varint(field << 3 | 5) + struct.pack("<f", x)


def pb_parse(buf):
    """Parse one protobuf message into a list of (field, wire_type, value)."""
    i = 0
    out = []
    n = len(buf)
    while i < n:
        key = 0
        shift = 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        field, wt = key >> 3, key & 7
        if wt == 0:
            v = 0
            shift = 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if v >= 1 << 63:
                v -= 1 << 64
            out.append((field, wt, v))
        elif wt == 1:
            out.append((field, wt, buf[i:i + 8]))
            i += 8
        elif wt == 2:
            ln = 0
            shift = 0
            while True:
                b = buf[i]
                i += 1
                ln |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out.append((field, wt, buf[i:i + ln]))
            i += ln
        elif wt == 5:
            out.append((field, wt, buf[i:i + 4]))
            i += 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wt)
    return out


def read_spm_pieces(path):
    """Return [(piece: str, score: float, type: int)] from a sentencepiece tokenizer.model."""
    with open(path, "rb") as f:
        buf = f.read()
    pieces = []
    for field, wt, val in pb_parse(buf):
        if field == 1 and wt == 2:
            piece, score, typ = "", 0.0, PIECE_NORMAL
            for f2, w2, v2 in pb_parse(val):
                if f2 == 1:
                    piece = v2.decode("utf-8")
                elif f2 == 2:
                    (score,) = struct.unpack("<f", v2)
                elif f2 == 3:
                    typ = v2
            pieces.append((piece, score, typ))
    return pieces


def spm_decode(pieces, ids):
    """Decode ids the way sentencepiece does for an identity-normalized model with
    add_dummy_prefix: control pieces vanish, byte pieces become raw bytes, '▁' becomes ' ',
    and one leading space is removed."""
    out = bytearray()
    for i in ids:
        p, _, t = pieces[i]
        if t == PIECE_CONTROL:
            continue
        if t == PIECE_BYTE:
            out.append(int(p[3:5], 16))
        elif t == PIECE_UNKNOWN:
            out += " \u2047 ".encode("utf-8")
        else:
            out += p.replace("\u2581", " ").encode("utf-8")
    text = out.decode("utf-8", errors="replace")
    return text[1:] if text.startswith(" ") else text
