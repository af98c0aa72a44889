//===- DeltaOps.td - delta dialect: change propagation -----*- tablegen -*-===//
//
// The delta dialect describes how cached values are brought up to date after
// an edit of the token sequence: dirty row sets as SSA values, and one step
// per vqt op that says which rows it refreshes and which rows it dirties.
//
//===----------------------------------------------------------------------===//

#ifndef INCNN_DIALECT_DELTA_DELTAOPS_TD
#define INCNN_DIALECT_DELTA_DELTAOPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Delta_Dialect : Dialect {
  let name = "delta";
  let cppNamespace = "::incnn::delta";
  let summary = "Change-propagation programs over cached transformer values";
  let description = [{
    A delta program lives beside the vqt graph that defines every value from
    scratch. For each vqt value it states, after an edit of the tokens, which
    rows must be refreshed and which rows come out different (the *dirty
    set*, an SSA value of type `!delta.rows`). Values marked by `delta.cache`
    are kept for every row between edits; their rows follow insertions and
    deletions (position remapping). Everything else is recomputed on demand
    for dirty rows only.

    ```mlir
    %edited = delta.edited_rows
    %r0 = delta.recompute_rows %x rows %edited : tensor<?x64xf32>
    %r1 = delta.attention_update %a query %r0 keys %r0 : tensor<?x64xf32>
    %r2 = delta.vq_cutoff %q rows %r1 : tensor<?x64xf32>
    %r3 = delta.union %r0, %r2
    ```
  }];
  let useDefaultTypePrinterParser = 1;
}

class Delta_Op<string mnemonic, list<Trait> traits = []>
    : Op<Delta_Dialect, mnemonic, traits>;

def Delta_RowsType : TypeDef<Delta_Dialect, "Rows"> {
  let mnemonic = "rows";
  let summary = "A set of token rows (a dirty set)";
  let description = [{
    The rows of a token tensor whose bits may differ from the cached value
    after an edit, in the coordinates of the edited sequence.
  }];
}

def Delta_TokenTensor : Type<CPred<"::llvm::isa<::mlir::RankedTensorType>($_self)">,
                             "tensor", "::mlir::RankedTensorType">;

//===----------------------------------------------------------------------===//
// Sources of change
//===----------------------------------------------------------------------===//

def Delta_EditedRowsOp : Delta_Op<"edited_rows", [Pure]> {
  let summary = "Rows whose token id was replaced or inserted by the edit";
  let description = [{
    ```mlir
    %e = delta.edited_rows
    ```
  }];
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = "attr-dict";
}

def Delta_ShiftedRowsOp : Delta_Op<"shifted_rows", [Pure]> {
  let summary = "Rows whose absolute position changed";
  let description = [{
    After an insertion or deletion at position p, every row from p on has a
    new absolute position; replacements shift nothing. Position-dependent ops
    (learned positions, rotary attention) treat these rows as dirty.

    ```mlir
    %s = delta.shifted_rows
    ```
  }];
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = "attr-dict";
}

//===----------------------------------------------------------------------===//
// Set algebra
//===----------------------------------------------------------------------===//

def Delta_UnionOp : Delta_Op<"union", [Pure, Commutative]> {
  let summary = "Union of dirty row sets";
  let description = [{
    With no inputs it is the empty set.

    ```mlir
    %u = delta.union %a, %b
    ```
  }];
  let arguments = (ins Variadic<Delta_RowsType>:$inputs);
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = "$inputs attr-dict";
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

//===----------------------------------------------------------------------===//
// Update steps
//===----------------------------------------------------------------------===//

def Delta_RecomputeRowsOp : Delta_Op<"recompute_rows", [Pure]> {
  let summary = "Recomputes the given rows of a token-local value";
  let description = [{
    `value` is defined by a token-local vqt op (or by a quantizing op
    compiled without cutoff, which re-quantizes the rows and keeps them all
    dirty). Its rows in `dirty` are
    recomputed from the (already updated) operands with the same row-invariant
    kernel as a from-scratch run; the result is the value's dirty set, equal
    to `dirty`. Cost: `|dirty|` rows of the op.

    ```mlir
    %r = delta.recompute_rows %q rows %d : tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Delta_TokenTensor:$value, Delta_RowsType:$dirty);
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = "$value `rows` $dirty attr-dict `:` type($value)";
  let hasVerifier = 1;
}

def Delta_AttentionUpdateOp : Delta_Op<"attention_update", [Pure]> {
  let summary = "Updates attention rows after query, key or value rows changed";
  let description = [{
    `value` is defined by `vqt.attention`. Rows in `query` (their own query
    changed) are recomputed in full. Every other row that attends to a row in
    `keys` (its key or value changed, or it was inserted or deleted) gets a
    delta update of its exact fixed-point softmax accumulators: the old term
    is subtracted and the new one added, O(head_dim) per (row, changed key)
    and head. A row whose canonical softmax shift changes is recomputed. The
    result is the set of rows whose output was refreshed.

    With `defer`, where the program's certificate chain covers the attention
    (attention -> [linear ->] VQ with a vq_cutoff step), a row whose codes a
    bound proves unchanged is not updated at all: its budget is charged, its
    exact update deferred until its state is needed (docs/exactness.md,
    "Deferred updates"). `incnn-compile --defer` (or vqt-incrementalize's
    `defer-attention`) turns it on.

    ```mlir
    %r = delta.attention_update %att query %dq keys %dkv defer
        : tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Delta_TokenTensor:$value, Delta_RowsType:$query,
                       Delta_RowsType:$keys, UnitAttr:$defer);
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = [{
    $value `query` $query `keys` $keys (`defer` $defer^)? attr-dict `:`
    type($value)
  }];
  let hasVerifier = 1;
}

def Delta_VQCutoffOp : Delta_Op<"vq_cutoff", [Pure]> {
  let summary = "Re-quantizes dirty rows; only rows whose codes flipped stay dirty";
  let description = [{
    `value` is the quantized result of `vqt.vq`. The codes of the rows in
    `dirty` are recomputed; rows whose codes did not change are **not** dirty
    downstream (early cutoff). A cached margin between the nearest and second
    nearest codeword may certify an unchanged code without a search when the
    certificate holds under float rounding.

    ```mlir
    %flipped = delta.vq_cutoff %q rows %d : tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Delta_TokenTensor:$value, Delta_RowsType:$dirty);
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = "$value `rows` $dirty attr-dict `:` type($value)";
  let hasVerifier = 1;
}

def Delta_PoolUpdateOp : Delta_Op<"pool_update", [Pure]> {
  let summary = "Updates a pooled vector from changed rows";
  let description = [{
    `value` is defined by `vqt.pool`; it is refreshed when any row in `dirty`
    feeds it (the last row for `last`, any row for `mean`) or the length
    changed. The result is the vector's dirty set (row 0 or empty).

    ```mlir
    %r = delta.pool_update %p rows %d : tensor<64xf32>
    ```
  }];
  let arguments = (ins Delta_TokenTensor:$value, Delta_RowsType:$dirty);
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = "$value `rows` $dirty attr-dict `:` type($value)";
  let hasVerifier = 1;
}

def Delta_VectorUpdateOp : Delta_Op<"vector_update", [Pure]> {
  let summary = "Recomputes a vector value (a head) if its input changed";
  let description = [{
    ```mlir
    %r = delta.vector_update %logits rows %d : tensor<512xf32>
    ```
  }];
  let arguments = (ins Delta_TokenTensor:$value, Delta_RowsType:$dirty);
  let results = (outs Delta_RowsType:$rows);
  let assemblyFormat = "$value `rows` $dirty attr-dict `:` type($value)";
}

//===----------------------------------------------------------------------===//
// Cache plan and outputs
//===----------------------------------------------------------------------===//

def Delta_CacheOp : Delta_Op<"cache"> {
  let summary = "Keeps every row of a value between edits";
  let description = [{
    Inserted by cache planning for values whose clean rows are read after an
    edit (attention keys, values and queries, residual operands, pooled
    inputs). Cached rows follow the edit: rows of deleted tokens are dropped,
    rows for inserted tokens are allocated, the rest keep their bits.
    `bytes_per_token` is the memory this costs per token.

    With `from_table`, every row of the value is a row of a weight table
    (an embedding without token types, indexed by the token, or a one-group
    VQ's codeword, indexed by its cached codes), and no step reads its old
    rows: the runtime reads rows from the table and stores none
    (`bytes_per_token` 0).

    ```mlir
    delta.cache %k {bytes_per_token = 256 : i64} : tensor<?x64xf32>
    delta.cache %vq {bytes_per_token = 0 : i64, from_table} : tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Delta_TokenTensor:$value, I64Attr:$bytes_per_token,
                       UnitAttr:$from_table);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

def Delta_OutputOp : Delta_Op<"output"> {
  let summary = "The program output and its dirty set";
  let description = [{
    ```mlir
    delta.output %logits rows %r : tensor<512xf32>
    ```
  }];
  let arguments = (ins Delta_TokenTensor:$value, Delta_RowsType:$dirty);
  let assemblyFormat = "$value `rows` $dirty attr-dict `:` type($value)";
}

#endif // INCNN_DIALECT_DELTA_DELTAOPS_TD
