// RUN: incnn-opt %s --vqt-incrementalize | FileCheck %s

// A residual block with VQ after attention and no positional encoding.
// CHECK-LABEL: func.func @block
// CHECK-SAME: (%[[T:.*]]: tensor<?xi32>)
func.func @block(%t: tensor<?xi32>) -> tensor<4xf32> {
  // CHECK: %[[E:.*]] = delta.edited_rows
  // CHECK-NOT: delta.shifted_rows
  %table = vqt.param "e" : tensor<16x8xf32>
  %w = vqt.param "w" : tensor<8x8xf32>
  %cb = vqt.param "cb" : tensor<2x4x4xf32>
  %head = vqt.param "h" : tensor<4x8xf32>
  // CHECK: %[[X:.*]] = vqt.embed %[[T]]
  // CHECK-NEXT: %[[RX:.*]] = delta.recompute_rows %[[X]] rows %[[E]]
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  // CHECK: %[[Q:.*]] = vqt.linear %[[X]]
  // CHECK-NEXT: %[[RQ:.*]] = delta.recompute_rows %[[Q]] rows %[[RX]]
  %q = vqt.linear %x, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  // Queries are row-aligned, keys and values are not.
  // CHECK: %[[A:.*]] = vqt.attention %[[Q]], %[[X]], %[[X]]
  // CHECK-NEXT: %[[RA:.*]] = delta.attention_update %[[A]] query %[[RQ]] keys %[[RX]]
  %a = vqt.attention %q, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: %[[VQ:.*]], %{{.*}} = vqt.vq %[[A]]
  // CHECK-NEXT: %[[RV:.*]] = delta.vq_cutoff %[[VQ]] rows %[[RA]]
  %vq, %codes = vqt.vq %a, %cb : tensor<?x8xf32>, tensor<2x4x4xf32> -> tensor<?x2xi32>
  // The residual add is dirty where its input was edited or a code flipped.
  // CHECK: %[[H:.*]] = vqt.add %[[X]], %[[VQ]]
  // CHECK-NEXT: %[[U:.*]] = delta.union %[[RX]], %[[RV]]
  // CHECK-NEXT: %[[RH:.*]] = delta.recompute_rows %[[H]] rows %[[U]]
  %h = vqt.add %x, %vq : tensor<?x8xf32>
  // CHECK: %[[P:.*]] = vqt.pool last %[[H]]
  // CHECK-NEXT: %[[RP:.*]] = delta.pool_update %[[P]] rows %[[RH]]
  %p = vqt.pool last %h : tensor<?x8xf32> -> tensor<8xf32>
  // CHECK: %[[L:.*]] = vqt.linear %[[P]]
  // CHECK-NEXT: %[[RL:.*]] = delta.vector_update %[[L]] rows %[[RP]]
  %l = vqt.linear %p, %head : tensor<8xf32>, tensor<4x8xf32> -> tensor<4xf32>
  // CHECK: delta.output %[[L]] rows %[[RL]]
  // CHECK-NEXT: return %[[L]]
  return %l : tensor<4xf32>
}

// Position-dependent ops add the shifted rows.
// CHECK-LABEL: func.func @positions
func.func @positions(%t: tensor<?xi32>) -> tensor<?x8xf32> {
  // CHECK-DAG: %[[S:.*]] = delta.shifted_rows
  // CHECK-DAG: %[[E:.*]] = delta.edited_rows
  %table = vqt.param "e" : tensor<16x8xf32>
  %pos = vqt.param "p" : tensor<34x8xf32>
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  // CHECK: %[[RX:.*]] = delta.recompute_rows
  // CHECK: vqt.add_positions
  // CHECK-NEXT: %[[U:.*]] = delta.union %[[RX]], %[[S]]
  // CHECK-NEXT: %[[RY:.*]] = delta.recompute_rows %{{.*}} rows %[[U]]
  %y = vqt.add_positions %x, %table {offset = 2 : i64} : tensor<?x8xf32>, tensor<16x8xf32>
  // Rotary attention: both queries and keys see the shift.
  // CHECK: vqt.attention
  // CHECK-NEXT: %[[QU:.*]] = delta.union %[[RY]], %[[S]]
  // CHECK-NEXT: %[[KU:.*]] = delta.union %[[RY]], %[[S]]
  // CHECK-NEXT: delta.attention_update %{{.*}} query %[[QU]] keys %[[KU]]
  %a = vqt.attention %y, %y, %y causal {num_heads = 2 : i64, num_kv_heads = 2 : i64, rope_theta = 1.0e+04 : f32} : tensor<?x8xf32>, tensor<?x8xf32>
  return %a : tensor<?x8xf32>
}
