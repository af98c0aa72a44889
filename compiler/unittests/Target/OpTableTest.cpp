//===- OpTableTest.cpp - OpTable.def against the vqt ODS definitions ------===//
//
// Every vqt op (but vqt.param, which names a weight) has its line in the
// runtime's op table, every line names a vqt op, an elementwise family
// agrees with the op's ODS shape rule, and docs/change-rules.md states every
// op's change rule. Likewise every delta update op has its line in the step
// table and every line names one.
//
//===----------------------------------------------------------------------===//

#include "incnn/Dialect/Delta/DeltaDialect.h"
#include "incnn/Dialect/VQT/VQTDialect.h"
#include "incnn/Dialect/VQT/VQTOps.h"
#include "incnn/runtime/Program.h"

#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

using namespace incnn::runtime;

TEST(OpTable, EveryVqtOpHasItsLine) {
  mlir::MLIRContext context;
  context.loadDialect<incnn::vqt::VQTDialect>();
  std::set<std::string> ods;
  for (mlir::RegisteredOperationName name : context.getRegisteredOperations()) {
    if (name.getDialectNamespace() != "vqt")
      continue;
    std::string mnemonic = name.stripDialect().str();
    ods.insert(mnemonic);
    if (mnemonic == "param")
      continue;
    std::optional<OpCode> code = opCodeOfMnemonic(mnemonic);
    ASSERT_TRUE(code) << "vqt." << mnemonic << " has no line in OpTable.def";
    bool sameShape = name.hasTrait<mlir::OpTrait::SameOperandsAndResultType>();
    switch (opFamily(*code)) {
    case OpFamily::Unary:
    case OpFamily::Binary:
      EXPECT_TRUE(sameShape) << "vqt." << mnemonic
                             << " is elementwise in OpTable.def but its "
                                "operands and result may differ in ODS";
      break;
    case OpFamily::Gated:
      EXPECT_FALSE(sameShape) << "vqt." << mnemonic << " must halve widths";
      break;
    case OpFamily::Special:
      break;
    }
  }
  std::set<std::string> table;
#define INCNN_OP(Name, Code, Str, Mnemonic) table.insert(Mnemonic);
#include "incnn/runtime/OpTable.def"
  for (const std::string &mnemonic : table)
    EXPECT_TRUE(ods.count(mnemonic))
        << "OpTable.def names '" << mnemonic << "', which is no vqt op";
}

TEST(OpTable, CodesAndNamesAreUnique) {
  std::set<uint32_t> codes;
  std::set<std::string> names;
#define INCNN_OP(Name, Code, Str, Mnemonic)                                    \
  EXPECT_TRUE(codes.insert(Code).second) << "code " << Code << " reused";      \
  EXPECT_TRUE(names.insert(Str).second) << Str << " named twice";              \
  EXPECT_STREQ(opCodeName(OpCode::Name), Str);
#include "incnn/runtime/OpTable.def"
}

TEST(OpTable, EveryOpHasItsChangeRuleDocumented) {
  std::ifstream in(INCNN_SOURCE_DIR "/docs/change-rules.md");
  ASSERT_TRUE(in) << "cannot read docs/change-rules.md";
  std::stringstream doc;
  doc << in.rdbuf();
  mlir::MLIRContext context;
  context.loadDialect<incnn::vqt::VQTDialect>();
  auto mentions = [&](const std::string &s) {
    return doc.str().find("`" + s + "`") != std::string::npos;
  };
  for (mlir::RegisteredOperationName name : context.getRegisteredOperations()) {
    if (name.getDialectNamespace() != "vqt")
      continue;
    std::string full = name.getStringRef().str();
    EXPECT_TRUE(mentions(name.stripDialect().str()) || mentions(full))
        << "docs/change-rules.md does not state the rule of " << full;
  }
}

TEST(StepTable, EveryDeltaUpdateOpHasItsLine) {
  mlir::MLIRContext context;
  context.loadDialect<incnn::delta::DeltaDialect>();
  std::set<std::string> ods, table;
  for (mlir::RegisteredOperationName name : context.getRegisteredOperations())
    if (name.getDialectNamespace() == "delta")
      ods.insert(name.stripDialect().str());
  // The program's cache plan and output are not steps.
  ods.erase("cache");
  ods.erase("output");
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler)                   \
  table.insert(Str);                                                           \
  EXPECT_STREQ(stepKindName(StepKind::Name), Str);
#include "incnn/runtime/StepTable.def"
  EXPECT_EQ(ods, table) << "StepTable.def and the delta dialect's update ops "
                           "differ";
}
