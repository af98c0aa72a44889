//===- VQTInterfaces.cpp - change-rule interface --------------------------===//
#include "incnn/Dialect/VQT/VQTInterfaces.h"

#include "incnn/Dialect/VQT/VQTInterfaces.cpp.inc"

llvm::StringRef incnn::vqt::stringifyChangeRule(ChangeRule rule) {
  switch (rule) {
  case ChangeRule::Constant:
    return "constant";
  case ChangeRule::TokenLocal:
    return "token-local";
  case ChangeRule::TokenMixing:
    return "token-mixing";
  case ChangeRule::Quantizing:
    return "quantizing";
  case ChangeRule::Reducing:
    return "reducing";
  }
  return "unknown";
}
