//===- VQTInterfaces.h - change-rule interface and traits --------*- C++
//-*-===//
//
// How a change in token rows propagates through a vqt op.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_DIALECT_VQT_VQTINTERFACES_H
#define INCNN_DIALECT_VQT_VQTINTERFACES_H

#include "mlir/IR/OpDefinition.h"
#include "llvm/ADT/StringRef.h"

namespace incnn::vqt {

/// The change-propagation rule of an op (see docs/change-rules.md).
enum class ChangeRule {
  Constant,
  TokenLocal,
  TokenMixing,
  Quantizing,
  Reducing
};

/// A printable name of a rule ("token-local", ...).
llvm::StringRef stringifyChangeRule(ChangeRule rule);

// Native traits: each gives the op its change rule.
template <typename ConcreteType>
class ConstantRule
    : public mlir::OpTrait::TraitBase<ConcreteType, ConstantRule> {
public:
  static ChangeRule getChangeRule() { return ChangeRule::Constant; }
};
template <typename ConcreteType>
class TokenLocal : public mlir::OpTrait::TraitBase<ConcreteType, TokenLocal> {
public:
  static ChangeRule getChangeRule() { return ChangeRule::TokenLocal; }
};
template <typename ConcreteType>
class TokenMixing : public mlir::OpTrait::TraitBase<ConcreteType, TokenMixing> {
public:
  static ChangeRule getChangeRule() { return ChangeRule::TokenMixing; }
};
template <typename ConcreteType>
class Quantizing : public mlir::OpTrait::TraitBase<ConcreteType, Quantizing> {
public:
  static ChangeRule getChangeRule() { return ChangeRule::Quantizing; }
};
template <typename ConcreteType>
class Reducing : public mlir::OpTrait::TraitBase<ConcreteType, Reducing> {
public:
  static ChangeRule getChangeRule() { return ChangeRule::Reducing; }
};

} // namespace incnn::vqt

#include "incnn/Dialect/VQT/VQTInterfaces.h.inc"

#endif // INCNN_DIALECT_VQT_VQTINTERFACES_H
