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

#endif // INCNN_COMPILER_PASSES_TD
