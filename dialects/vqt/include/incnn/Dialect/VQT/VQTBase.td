//===- VQTBase.td - vqt dialect definition and base classes -*- tablegen -*-===//
//
// The vqt dialect: transformer graphs with vector-quantization (VQ) nodes and
// an explicit token axis.
//
//===----------------------------------------------------------------------===//

#ifndef INCNN_DIALECT_VQT_VQTBASE_TD
#define INCNN_DIALECT_VQT_VQTBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"

def VQT_Dialect : Dialect {
  let name = "vqt";
  let cppNamespace = "::incnn::vqt";
  let summary = "Transformer graphs with vector-quantized intermediate values";
  let description = [{
    The vqt dialect captures decoder-only transformers (OPT-style and
    Llama-style) whose hidden vectors may be vector-quantized, in a form the
    incnn compiler can turn into a change-propagation program.

    Values are tensors. A *token tensor* has shape `tensor<?xDxf32>`: its
    dynamic leading dimension is the **token axis** (one row per token of the
    document). Token ids are `tensor<?xi32>`. After pooling, values are plain
    vectors `tensor<Dxf32>`. Weights are never inlined: `vqt.param` names a
    tensor of the checkpoint and the program loader binds it.

    Every op implements `ChangeRuleOpInterface`, which states how a change in
    some rows of its inputs propagates to its outputs (token-local,
    token-mixing, quantizing or reducing); see `docs/change-rules.md`.
  }];
}

/// Base class of vqt ops.
class VQT_Op<string mnemonic, list<Trait> traits = []>
    : Op<VQT_Dialect, mnemonic, traits>;

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

def VQT_TokenIds : Type<CPred<"::incnn::vqt::isTokenIdsType($_self)">,
                        "token ids tensor<?xi32>", "::mlir::RankedTensorType">,
                   BuildableType<"::incnn::vqt::getTokenIdsType($_builder.getContext())">;

def VQT_Rows : Type<CPred<"::incnn::vqt::isRowsType($_self)">,
                    "token rows tensor<?xDxf32>", "::mlir::RankedTensorType">;

def VQT_Vector : Type<CPred<"::incnn::vqt::isVectorType($_self)">,
                      "vector tensor<Dxf32>", "::mlir::RankedTensorType">;

def VQT_RowsOrVector : AnyTypeOf<[VQT_Rows, VQT_Vector]>;

def VQT_Weight : Type<CPred<"::incnn::vqt::isWeightType($_self)">,
                      "static f32 tensor", "::mlir::RankedTensorType">;

def VQT_Codes : Type<CPred<"::incnn::vqt::isCodesType($_self)">,
                     "codes tensor<?xGxi32>", "::mlir::RankedTensorType">;

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def VQT_MaskKind : I32EnumAttr<"MaskKind", "attention masking", [
  I32EnumAttrCase<"causal", 0>,
  I32EnumAttrCase<"bidirectional", 1>
]> {
  let cppNamespace = "::incnn::vqt";
}

def VQT_PoolKind : I32EnumAttr<"PoolKind", "how token rows are pooled", [
  I32EnumAttrCase<"last", 0>,
  I32EnumAttrCase<"mean", 1>,
  I32EnumAttrCase<"first", 2>
]> {
  let cppNamespace = "::incnn::vqt";
}

#endif // INCNN_DIALECT_VQT_VQTBASE_TD
