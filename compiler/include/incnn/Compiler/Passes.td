//===- Passes.td - incnn compiler passes --------------------*- tablegen -*-===//
#ifndef INCNN_COMPILER_PASSES_TD
#define INCNN_COMPILER_PASSES_TD

include "mlir/Pass/PassBase.td"

def AnnotateChangeRules : Pass<"vqt-annotate-change-rules"> {
  let summary = "Attach each vqt op's change rule as an attribute";
  let description = [{
    Queries `ChangeRuleOpInterface` on every op and records the answer as a
    `vqt.change_rule` string attribute (and `vqt.position_dependent` where the
    op depends on absolute positions). Used to inspect and test the rules.

    Before:
    ```mlir
    %y = vqt.relu %x : tensor<?x64xf32>
    ```
    After:
    ```mlir
    %y = vqt.relu %x {vqt.change_rule = "token-local"} : tensor<?x64xf32>
    ```
  }];
  let statistics = [
    Statistic<"numAnnotated", "num-annotated", "Number of ops annotated">
  ];
}

def AnnotateChangeSources : Pass<"vqt-annotate-change-sources"> {
  let summary = "Attach the change analysis result to every vqt op";
  let description = [{
    Runs the change analysis (which dirty row sets each value inherits, from
    the change-rule interface alone) and records, per op, its sources as
    `vqt.change_sources` and, where after an edit some user reads rows that
    are not dirty, `vqt.keep_all_rows`. Used to inspect and test the analysis.

    ```mlir
    %h = vqt.add %x, %vq {vqt.change_sources = ["edited", "vqt.vq#9"],
                          vqt.keep_all_rows} : tensor<?x64xf32>
    ```
  }];
}

def Incrementalize : Pass<"vqt-incrementalize", "mlir::ModuleOp"> {
  let summary = "Derive the change-propagation program (vqt -> delta)";
  let description = [{
    For every vqt op, adds the delta step that updates its result after an
    edit, chosen by the op's change rule (never by its name):
    token-local -> `delta.recompute_rows` over the union of the operands'
    dirty sets (plus the shifted rows for position-dependent ops);
    token-mixing -> `delta.attention_update` with the row-aligned operands'
    dirty rows as queries and the others as keys; quantizing ->
    `delta.vq_cutoff`; reducing -> `delta.pool_update`. The function's result
    gets a `delta.output`.

    Warns about a quantizer that cuts no work: one whose rows only reach
    token-local ops that also read the unquantized result of a token-mixing
    op (e.g. VQ after the second layer's attention only, where the residual
    stream already carries the first attention's change to every later row).

    Before:
    ```mlir
    %y = vqt.relu %x : tensor<?x64xf32>
    ```
    After:
    ```mlir
    %y = vqt.relu %x : tensor<?x64xf32>
    %r = delta.recompute_rows %y rows %rx : tensor<?x64xf32>
    ```
  }];
  let dependentDialects = ["incnn::delta::DeltaDialect"];
  let options = [
    Option<"vqCutoff", "vq-cutoff", "bool", /*default=*/"true",
           "Quantizers stop unchanged codes (delta.vq_cutoff); false: they "
           "recompute their rows and every row stays dirty (an ablation)">,
    Option<"deferAttention", "defer-attention", "bool", /*default=*/"false",
           "Attention updates defer rows whose VQ codes a certificate proves "
           "unchanged (delta.attention_update defer; off by default: on the "
           "bundled model it does not pay yet, docs/benchmarks.md)">
  ];
  let statistics = [
    Statistic<"numSteps", "num-steps", "Number of delta steps created">
  ];
}

def PlanCache : Pass<"delta-plan-cache", "mlir::ModuleOp"> {
  let summary = "Decide which values keep every row between edits";
  let description = [{
    A value keeps all its rows only if, after some edit, a user reads rows
    outside the value's own dirty set (attention keys/values/queries, residual
    operands whose partner has other change sources, pooled inputs). Adds a
    `delta.cache` op for each such value, and records on the module
    `delta.cache_bytes_per_token`: cached rows plus the attention
    accumulators and VQ codes the runtime keeps. A cached value whose rows
    are all rows of a table is marked `from_table` and costs nothing: the
    runtime reads it from the table. The tables are weights (an embedding
    without token types; a one-group VQ's codewords, indexed by its kept
    codes) or tables the runtime computes once per program for a value whose
    rows depend only on a key of few values: their token and the codes of
    one-group VQs before them (a token-local chain from an embedding without
    added positions, and from such VQs' outputs). Without learned positions
    the first layer's queries, keys and values are keyed by the token, and
    after a one-group VQ the next layer's by the token and that VQ's code.
    A table (keys x width floats) takes at most `computed-table-mib` MiB
    (the runtime refuses tables over 64 MiB).

    ```mlir
    delta.cache %k {bytes_per_token = 128 : i64} : tensor<?x32xf32>
    ```
  }];
  let dependentDialects = ["incnn::delta::DeltaDialect"];
  let options = [
    Option<"computedTableMiB", "computed-table-mib", "int64_t",
           /*default=*/"16",
           "Largest computed table (keys x width floats) to read a value's "
           "rows from, in MiB; 0: none">,
  ];
  let statistics = [
    Statistic<"numCached", "num-cached", "Number of values kept for all rows">,
    Statistic<"bytesPerToken", "bytes-per-token", "Cache bytes per token">
  ];
}

#endif // INCNN_COMPILER_PASSES_TD
