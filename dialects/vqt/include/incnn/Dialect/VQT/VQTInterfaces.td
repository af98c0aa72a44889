//===- VQTInterfaces.td - change-rule op interface ---------*- tablegen -*-===//
//
// Every vqt op states how changed input rows propagate to its outputs. The
// incrementalize pass is generic over this interface.
//
//===----------------------------------------------------------------------===//

#ifndef INCNN_DIALECT_VQT_VQTINTERFACES_TD
#define INCNN_DIALECT_VQT_VQTINTERFACES_TD

include "mlir/IR/OpBase.td"

def VQT_ChangeRuleOpInterface : OpInterface<"ChangeRuleOpInterface"> {
  let cppNamespace = "::incnn::vqt";
  let description = [{
    States how a change in some token rows of an op's inputs propagates to its
    outputs. The rule is one of:

    * `Constant`: no token input (weights); never changes after compilation.
    * `TokenLocal`: output row i depends only on input row i.
    * `TokenMixing`: output row i may depend on every input row j (attention);
      changed key/value rows are folded into other rows by delta updates.
    * `Quantizing`: token-local, and a row whose code did not change is not
      dirty downstream (early cutoff).
    * `Reducing`: many rows reduce to one vector (pooling).

    The rule comes from one of the native traits `TokenLocal`, `TokenMixing`,
    `Quantizing`, `Reducing` or `ConstantRule`; an op without one does not
    compile.
  }];

  let methods = [
    InterfaceMethod<"Returns how changed input rows propagate.",
      "::incnn::vqt::ChangeRule", "getChangeRule", (ins)>,
    InterfaceMethod<[{
        Returns true if output row i depends on the absolute position i, so an
        insertion or deletion before row i changes it.
      }],
      "bool", "dependsOnPosition", (ins), [{}], [{ return false; }]>,
    InterfaceMethod<[{
        Returns true if output row i reads only row i of operand `index`
        (token-local operands, attention queries), false if it may read every
        row of it (attention keys and values).
      }],
      "bool", "isRowAligned", (ins "unsigned":$index), [{}],
      [{ return true; }]>,
  ];
}

def VQT_TokenLocal : NativeOpTrait<"TokenLocal"> {
  let cppNamespace = "::incnn::vqt";
}
def VQT_TokenMixing : NativeOpTrait<"TokenMixing"> {
  let cppNamespace = "::incnn::vqt";
}
def VQT_Quantizing : NativeOpTrait<"Quantizing"> {
  let cppNamespace = "::incnn::vqt";
}
def VQT_Reducing : NativeOpTrait<"Reducing"> {
  let cppNamespace = "::incnn::vqt";
}
def VQT_ConstantRule : NativeOpTrait<"ConstantRule"> {
  let cppNamespace = "::incnn::vqt";
}

#endif // INCNN_DIALECT_VQT_VQTINTERFACES_TD
