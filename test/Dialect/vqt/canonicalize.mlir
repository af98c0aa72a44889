// RUN: incnn-opt %s -canonicalize -cse | FileCheck %s

// relu is idempotent: relu(relu(x)) folds to relu(x).
// CHECK-LABEL: func.func @relu_idempotent
// CHECK-SAME: (%[[X:.*]]: tensor<?x8xf32>)
// CHECK-NEXT: %[[R:.*]] = vqt.relu %[[X]] : tensor<?x8xf32>
// CHECK-NEXT: return %[[R]]
func.func @relu_idempotent(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %a = vqt.relu %x : tensor<?x8xf32>
  %b = vqt.relu %a : tensor<?x8xf32>
  return %b : tensor<?x8xf32>
}

// Two references to the same weight become one; unused ops disappear.
// CHECK-LABEL: func.func @params_dedup
// CHECK-COUNT-1: vqt.param "w"
// CHECK-NOT: vqt.param
// CHECK-NOT: vqt.gelu
func.func @params_dedup(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %w1 = vqt.param "w" : tensor<8x8xf32>
  %w2 = vqt.param "w" : tensor<8x8xf32>
  %unused = vqt.gelu %x : tensor<?x8xf32>
  %a = vqt.linear %x, %w1 : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %b = vqt.linear %a, %w2 : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  return %b : tensor<?x8xf32>
}
