// RUN: incnn-opt %s --vqt-incrementalize --delta-plan-cache | FileCheck %s
// RUN: incnn-opt %s --vqt-incrementalize --delta-plan-cache=computed-table-mib=0 \
// RUN:   | FileCheck %s --check-prefix=NOTOKEN

// Kept values whose rows are rows of a table are marked from_table and cost
// nothing: an embedding without token types, the first attention's query,
// keys and values (token tables: their rows depend on their token alone)
// and a one-group VQ's codewords (its codes are cached). An embedding with
// token types, a two-group VQ, and values after an attention (whose rows
// depend on other tokens) are stored.
// Bytes per token: attention state (8 * 8 + 16 * 2) + codes (4) + the
// two-group VQ's result (32) and codes (8) + the typed embedding (32, an
// attention key) + the second attention's query (32), output (32) and state
// (96) + y (32, pooled) = 364; with no token tables q, k and v add 3 * 32.
// CHECK: module attributes {delta.cache_bytes_per_token = 364 : i64}
// NOTOKEN: module attributes {delta.cache_bytes_per_token = 460 : i64}
// CHECK-LABEL: func.func @block
func.func @block(%t: tensor<?xi32>) -> tensor<8xf32> {
  %table = vqt.param "e" : tensor<16x8xf32>
  %types = vqt.param "types" : tensor<2x8xf32>
  %g = vqt.param "g" : tensor<8xf32>
  %w = vqt.param "w" : tensor<8x8xf32>
  %cb1 = vqt.param "cb1" : tensor<1x4x8xf32>
  %cb2 = vqt.param "cb2" : tensor<2x4x4xf32>
  // CHECK: %[[X:.*]] = vqt.embed %{{.*}}, %{{.*}} :
  // CHECK: delta.cache %[[X]] {bytes_per_token = 0 : i64, from_table}
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  %n = vqt.layer_norm %x, %g, %g {epsilon = 1.0e-05 : f32} : tensor<?x8xf32>, tensor<8xf32>, tensor<8xf32>
  // CHECK: %[[N:.*]] = vqt.layer_norm
  // CHECK-NOT: delta.cache %[[N]]
  // CHECK-COUNT-3: delta.cache %{{.*}} {bytes_per_token = 0 : i64, from_table}
  // NOTOKEN-COUNT-3: delta.cache %{{.*}} {bytes_per_token = 32 : i64}
  %q = vqt.linear %n, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %k = vqt.linear %n, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %v = vqt.linear %n, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %a = vqt.attention %q, %k, %v causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: %[[VQ:.*]], %[[CODES:.*]] = vqt.vq %{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<1x4x8xf32>
  // CHECK-DAG: delta.cache %[[VQ]] {bytes_per_token = 0 : i64, from_table}
  // CHECK-DAG: delta.cache %[[CODES]] {bytes_per_token = 4 : i64}
  %vq, %codes = vqt.vq %a, %cb1 : tensor<?x8xf32>, tensor<1x4x8xf32> -> tensor<?x1xi32>
  %h = vqt.add %x, %vq : tensor<?x8xf32>
  // CHECK: %[[VQ2:.*]], %{{.*}} = vqt.vq %{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<2x4x4xf32>
  // CHECK: delta.cache %[[VQ2]] {bytes_per_token = 32 : i64}
  %vq2, %codes2 = vqt.vq %h, %cb2 : tensor<?x8xf32>, tensor<2x4x4xf32> -> tensor<?x2xi32>
  // CHECK: %[[X2:.*]] = vqt.embed %{{.*}}, %{{.*}}, %{{.*}} :
  // CHECK: delta.cache %[[X2]] {bytes_per_token = 32 : i64}
  %x2 = vqt.embed %t, %table, %types : tensor<16x8xf32>, tensor<2x8xf32> -> tensor<?x8xf32>
  %q2 = vqt.linear %vq2, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %a2 = vqt.attention %q2, %x2, %x2 causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: %[[A2:.*]] = vqt.attention
  // CHECK: delta.cache %[[A2]] {bytes_per_token = 32 : i64}
  // CHECK: %[[Y:.*]] = vqt.add
  // CHECK: delta.cache %[[Y]] {bytes_per_token = 32 : i64}
  // CHECK-NOT: from_table
  %y = vqt.add %vq2, %a2 : tensor<?x8xf32>
  %p = vqt.pool mean %y : tensor<?x8xf32> -> tensor<8xf32>
  return %p : tensor<8xf32>
}
