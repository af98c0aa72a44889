//===- VQTOps.td - vqt operations --------------------------*- tablegen -*-===//
//
// Operations of the vqt dialect.
//
//===----------------------------------------------------------------------===//

#ifndef INCNN_DIALECT_VQT_VQTOPS_TD
#define INCNN_DIALECT_VQT_VQTOPS_TD

include "incnn/Dialect/VQT/VQTBase.td"
include "incnn/Dialect/VQT/VQTInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

/// An op whose change rule is given by `rule` (one of the native traits).
class VQT_RuleOp<string mnemonic, Trait rule, list<Trait> traits = []>
    : VQT_Op<mnemonic, !listconcat([Pure, rule, VQT_ChangeRuleOpInterface],
                                   traits)>;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def VQT_ParamOp : VQT_RuleOp<"param", VQT_ConstantRule> {
  let summary = "A named weight tensor of the checkpoint";
  let description = [{
    Refers to a weight by its checkpoint name; the data is bound when the
    program is built, never inlined into the IR. With `rows`, the weight is
    the slice of the tensor's first dimension that starts there and is as
    long as the result type says (ModernBERT's fused `Wqkv` becomes three
    projections).

    ```mlir
    %w = vqt.param "model.layers.0.self_attn.q_proj.weight" : tensor<64x64xf32>
    %k = vqt.param "model.layers.0.attn.Wqkv.weight" rows 64 : tensor<64x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, OptionalAttr<I64Attr>:$rows);
  let results = (outs VQT_Weight:$result);
  let assemblyFormat = "$name (`rows` $rows^)? attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Embeddings and positions
//===----------------------------------------------------------------------===//

def VQT_EmbedOp : VQT_RuleOp<"embed", VQT_TokenLocal> {
  let summary = "Token embedding lookup";
  let description = [{
    Row i of the result is row `tokens[i]` of `table` (`[vocab, D]`), plus
    row 0 of `type_table` when given (BERT's token type embedding, every
    token of type 0): `table[tokens[i]] + type_table[0]`.

    ```mlir
    %h = vqt.embed %tokens, %table : tensor<512x64xf32> -> tensor<?x64xf32>
    %b = vqt.embed %tokens, %table, %types
           : tensor<512x64xf32>, tensor<2x64xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins VQT_TokenIds:$tokens, VQT_Weight:$table,
                       Optional<VQT_Weight>:$type_table);
  let results = (outs VQT_Rows:$result);
  let assemblyFormat = [{
    $tokens `,` $table (`,` $type_table^)? attr-dict `:` type($table)
    (`,` type($type_table)^)? `->` type($result)
  }];
  let hasVerifier = 1;
}

def VQT_AddPositionsOp : VQT_RuleOp<"add_positions", VQT_TokenLocal,
    [AllTypesMatch<["input", "result"]>,
     DeclareOpInterfaceMethods<VQT_ChangeRuleOpInterface, ["dependsOnPosition"]>]> {
  let summary = "Adds learned absolute position embeddings";
  let description = [{
    `result[i] = input[i] + table[i + offset]` (OPT uses `offset = 2`). Row i
    depends on its absolute position, so inserting or deleting tokens before
    it changes it.

    ```mlir
    %x = vqt.add_positions %h, %pos {offset = 2 : i64}
           : tensor<?x64xf32>, tensor<130x64xf32>
    ```
  }];
  let arguments = (ins VQT_Rows:$input, VQT_Weight:$table,
                       DefaultValuedAttr<I64Attr, "0">:$offset);
  let results = (outs VQT_Rows:$result);
  let assemblyFormat = [{
    $input `,` $table attr-dict `:` type($input) `,` type($table)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Normalization
//===----------------------------------------------------------------------===//

def VQT_LayerNormOp : VQT_RuleOp<"layer_norm", VQT_TokenLocal,
    [AllTypesMatch<["input", "result"]>]> {
  let summary = "Layer normalization over each row";
  let description = [{
    `(x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta`, per row; without
    `beta` (ModernBERT's norms have no bias) the last term is dropped.

    ```mlir
    %y = vqt.layer_norm %x, %g, %b {epsilon = 1.0e-05 : f32}
           : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
    %z = vqt.layer_norm %x, %g {epsilon = 1.0e-05 : f32}
           : tensor<?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins VQT_RowsOrVector:$input, VQT_Weight:$gamma,
                       Optional<VQT_Weight>:$beta, F32Attr:$epsilon);
  let results = (outs VQT_RowsOrVector:$result);
  let assemblyFormat = [{
    $input `,` $gamma (`,` $beta^)? attr-dict `:` type($input) `,` type($gamma)
    (`,` type($beta)^)?
  }];
  let hasVerifier = 1;
}

def VQT_RmsNormOp : VQT_RuleOp<"rms_norm", VQT_TokenLocal,
    [AllTypesMatch<["input", "result"]>]> {
  let summary = "RMS normalization over each row";
  let description = [{
    `x / sqrt(mean(x^2) + epsilon) * gamma`, per row.

    ```mlir
    %y = vqt.rms_norm %x, %g {epsilon = 1.0e-05 : f32}
           : tensor<?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins VQT_RowsOrVector:$input, VQT_Weight:$gamma,
                       F32Attr:$epsilon);
  let results = (outs VQT_RowsOrVector:$result);
  let assemblyFormat = [{
    $input `,` $gamma attr-dict `:` type($input) `,` type($gamma)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Linear layers and elementwise ops
//===----------------------------------------------------------------------===//

def VQT_LinearOp : VQT_RuleOp<"linear", VQT_TokenLocal> {
  let summary = "Affine map `x W^T + b` of each row (or of a vector)";
  let description = [{
    `weight` is `[out, in]` as in PyTorch; `bias`, if present, is `[out]`.
    Applied to a pooled vector it is a classifier or LM head.

    ```mlir
    %q = vqt.linear %x, %wq, %bq
           : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
    %logits = vqt.linear %v, %head : tensor<64xf32>, tensor<512x64xf32> -> tensor<512xf32>
    ```
  }];
  let arguments = (ins VQT_RowsOrVector:$input, VQT_Weight:$weight,
                       Optional<VQT_Weight>:$bias);
  let results = (outs VQT_RowsOrVector:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,` type($weight)
    (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
}

class VQT_UnaryOp<string mnemonic, string formula, list<Trait> traits = []>
    : VQT_RuleOp<mnemonic, VQT_TokenLocal,
                 !listconcat([SameOperandsAndResultType], traits)> {
  let summary = "Elementwise " # formula;
  let description = "Applies `" # formula # "` to every element.\n\n" #
    "```mlir\n%y = vqt." # mnemonic # " %x : tensor<?x64xf32>\n```";
  let arguments = (ins VQT_RowsOrVector:$input);
  let results = (outs VQT_RowsOrVector:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

def VQT_ReluOp : VQT_UnaryOp<"relu", "max(x, 0)", [Idempotent]>;
def VQT_GeluOp : VQT_UnaryOp<"gelu", "x * (1 + erf(x / sqrt(2))) / 2">;
def VQT_GeluTanhOp : VQT_UnaryOp<"gelu_tanh",
    "x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))) / 2 (Hugging Face gelu_new)">;
def VQT_SiluOp : VQT_UnaryOp<"silu", "x / (1 + exp(-x))">;
def VQT_TanhOp : VQT_UnaryOp<"tanh", "tanh(x) (BERT's pooler)">;

class VQT_BinaryOp<string mnemonic, string formula, list<Trait> traits = []>
    : VQT_RuleOp<mnemonic, VQT_TokenLocal,
                 !listconcat([SameOperandsAndResultType], traits)> {
  let summary = "Elementwise " # formula;
  let description = "Computes `" # formula # "` elementwise.\n\n" #
    "```mlir\n%y = vqt." # mnemonic # " %a, %b : tensor<?x64xf32>\n```";
  let arguments = (ins VQT_RowsOrVector:$lhs, VQT_RowsOrVector:$rhs);
  let results = (outs VQT_RowsOrVector:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def VQT_AddOp : VQT_BinaryOp<"add", "lhs + rhs", [Commutative]>;
def VQT_MulOp : VQT_BinaryOp<"mul", "lhs * rhs", [Commutative]>;

class VQT_GatedOp<string mnemonic, string activation>
    : VQT_RuleOp<mnemonic, VQT_TokenLocal> {
  let summary = "Gated " # activation # ": " # activation # "(u) * g";
  let description = "Splits each row of width 2h into `[u | g]` (the first " #
    "and second halves, as PyTorch's `chunk(2, dim=-1)`) and computes `" #
    activation # "(u) * g` elementwise: rows of width h.\n\n" #
    "```mlir\n%y = vqt." # mnemonic #
    " %x : tensor<?x128xf32> -> tensor<?x64xf32>\n```";
  let arguments = (ins VQT_RowsOrVector:$input);
  let results = (outs VQT_RowsOrVector:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let extraClassDefinition = [{
    ::mlir::LogicalResult $cppClass::verify() {
      return verifyGatedOp(getOperation());
    }
  }];
}

def VQT_GeGluOp : VQT_GatedOp<"geglu", "gelu">;
def VQT_SwiGluOp : VQT_GatedOp<"swiglu", "silu">;

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

def VQT_AttentionOp : VQT_RuleOp<"attention", VQT_TokenMixing,
    [AllTypesMatch<["query", "result"]>, AllTypesMatch<["key", "value"]>,
     DeclareOpInterfaceMethods<VQT_ChangeRuleOpInterface,
                               ["dependsOnPosition", "isRowAligned"]>]> {
  let summary = "Multi-head scaled dot-product attention";
  let description = [{
    Takes projected queries `[n, H*hd]` and keys/values `[n, Hkv*hd]` (grouped
    key/value heads: query head h reads key/value head `h / (H / Hkv)`). Row i
    of the result is `softmax_j(scale * q_i . k_j) v_j` over `j <= i` (causal)
    or all `j` (bidirectional). With `rope_theta`, the rotary embedding (pairs
    `(x[t], x[t + hd/2])`, angle `p * theta^(-2t/hd)`) is applied to q and k
    at their absolute positions first. `scale` defaults to `1/sqrt(hd)`.
    With `window = W` (sliding-window attention, as Mistral's
    `sliding_window`), row i attends only keys `i - W < j <= i` (causal) or
    `|i - j| < W` (bidirectional), so a changed key reaches only the rows
    within W of it and no row reads distant text.

    ```mlir
    %o = vqt.attention %q, %k, %v causal
           {num_heads = 8 : i64, num_kv_heads = 4 : i64, rope_theta = 1.0e+04 : f32}
           : tensor<?x64xf32>, tensor<?x32xf32>
    ```
  }];
  let arguments = (ins VQT_Rows:$query, VQT_Rows:$key, VQT_Rows:$value,
                       VQT_MaskKind:$mask, I64Attr:$num_heads,
                       I64Attr:$num_kv_heads, OptionalAttr<F32Attr>:$rope_theta,
                       OptionalAttr<F32Attr>:$scale,
                       OptionalAttr<I64Attr>:$window);
  let results = (outs VQT_Rows:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value $mask attr-dict `:` type($query) `,` type($key)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Width of one head.
    int64_t getHeadDim();
    /// The scale applied to q.k (the attribute, or 1/sqrt(head_dim)).
    float getEffectiveScale();
  }];
}

//===----------------------------------------------------------------------===//
// Vector quantization
//===----------------------------------------------------------------------===//

def VQT_VectorQuantizeOp : VQT_RuleOp<"vq", VQT_Quantizing,
    [AllTypesMatch<["input", "result"]>]> {
  let summary = "Grouped vector quantization of each row";
  let description = [{
    `codebook` is `[G, K, D/G]`: G groups of K codewords. Each row is split
    into G contiguous groups; each group snaps to its nearest codeword by
    squared L2 distance (ties go to the lowest index). `result` is the
    concatenation of the chosen codewords, `codes` their indices. A row whose
    codes did not change is not dirty downstream.

    ```mlir
    %y, %codes = vqt.vq %x, %cb : tensor<?x64xf32>, tensor<4x16x16xf32> -> tensor<?x4xi32>
    ```
  }];
  let arguments = (ins VQT_Rows:$input, VQT_Weight:$codebook);
  let results = (outs VQT_Rows:$result, VQT_Codes:$codes);
  let assemblyFormat = [{
    $input `,` $codebook attr-dict `:` type($input) `,` type($codebook) `->` type($codes)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNumGroups();
    int64_t getNumCodes();
  }];
}

//===----------------------------------------------------------------------===//
// Reductions
//===----------------------------------------------------------------------===//

def VQT_PoolOp : VQT_RuleOp<"pool", VQT_Reducing> {
  let summary = "Pools token rows into one vector";
  let description = [{
    `last` takes the last row (causal LM heads, OPT's sequence classifier),
    `first` the first (BERT's `[CLS]` row), `mean` averages all rows. Feeding
    the result to `vqt.linear` gives the classifier or LM head.

    ```mlir
    %v = vqt.pool last %x : tensor<?x64xf32> -> tensor<64xf32>
    ```
  }];
  let arguments = (ins VQT_PoolKind:$kind, VQT_Rows:$input);
  let results = (outs VQT_Vector:$result);
  let assemblyFormat = "$kind $input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

#endif // INCNN_DIALECT_VQT_VQTOPS_TD
