// RUN: incnn-opt %s --vqt-incrementalize --delta-plan-cache | FileCheck %s

// Bytes per token: vq result (32) + y (32, pooled) + attention state
// (8 * 8 + 16 * 2 = 96) + codes (4 * 2 = 8) = 168. x and q are kept but read
// from tables (the embedding, and q's token table: its rows depend on their
// token alone). h and the MLP are not kept: their users only read their
// dirty rows.
// CHECK: module attributes {delta.cache_bytes_per_token = 168 : i64}
// CHECK-LABEL: func.func @block
func.func @block(%t: tensor<?xi32>) -> tensor<8xf32> {
  %table = vqt.param "e" : tensor<16x8xf32>
  %w = vqt.param "w" : tensor<8x8xf32>
  %cb = vqt.param "cb" : tensor<2x4x4xf32>
  // CHECK: %[[X:.*]] = vqt.embed
  // CHECK: delta.cache %[[X]] {bytes_per_token = 0 : i64, from_table}
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  // CHECK: %[[Q:.*]] = vqt.linear %[[X]]
  // CHECK: delta.cache %[[Q]] {bytes_per_token = 0 : i64, from_table}
  %q = vqt.linear %x, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  // CHECK: %[[A:.*]] = vqt.attention
  // CHECK-NOT: delta.cache %[[A]]
  %a = vqt.attention %q, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: %[[VQ:.*]], %{{.*}} = vqt.vq %[[A]]
  // CHECK: delta.cache %[[VQ]] {bytes_per_token = 32 : i64}
  %vq, %codes = vqt.vq %a, %cb : tensor<?x8xf32>, tensor<2x4x4xf32> -> tensor<?x2xi32>
  // CHECK: %[[H:.*]] = vqt.add %[[X]], %[[VQ]]
  // CHECK-NOT: delta.cache %[[H]]
  %h = vqt.add %x, %vq : tensor<?x8xf32>
  %m = vqt.linear %h, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %r = vqt.relu %m : tensor<?x8xf32>
  // CHECK: %[[Y:.*]] = vqt.add %[[H]], %{{.*}}
  // CHECK: delta.cache %[[Y]]
  %y = vqt.add %h, %r : tensor<?x8xf32>
  %p = vqt.pool mean %y : tensor<?x8xf32> -> tensor<8xf32>
  return %p : tensor<8xf32>
}
