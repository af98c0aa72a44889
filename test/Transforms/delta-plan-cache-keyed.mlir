// RUN: incnn-opt %s --vqt-incrementalize --delta-plan-cache | FileCheck %s
// RUN: incnn-opt %s --vqt-incrementalize --delta-plan-cache=computed-table-mib=0 \
// RUN:   | FileCheck %s --check-prefix=NONE

// After a one-group VQ whose codes are kept, a value computed from the
// token's embedding and the VQ's output depends on the token and the code
// alone: the runtime computes its table (16 tokens x 4 codes rows) and the
// session reads it from there. With no room for computed tables it is
// stored (32 bytes a token).
// Bytes per token: two attention states (2 * (8 * 8 + 16 * 2)) + codes (4)
// + the pooled attention output (32) = 228; 260 with q stored.
// CHECK: module attributes {delta.cache_bytes_per_token = 228 : i64}
// NONE: module attributes {delta.cache_bytes_per_token = 260 : i64}
func.func @block(%t: tensor<?xi32>) -> tensor<8xf32> {
  %table = vqt.param "e" : tensor<16x8xf32>
  %w = vqt.param "w" : tensor<8x8xf32>
  %cb = vqt.param "cb" : tensor<1x4x8xf32>
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  %a = vqt.attention %x, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  %vq, %codes = vqt.vq %a, %cb : tensor<?x8xf32>, tensor<1x4x8xf32> -> tensor<?x1xi32>
  %h = vqt.add %x, %vq : tensor<?x8xf32>
  // CHECK: %[[Q:.*]] = vqt.linear
  // CHECK: delta.cache %[[Q]] {bytes_per_token = 0 : i64, from_table}
  // NONE: %[[Q:.*]] = vqt.linear
  // NONE: delta.cache %[[Q]] {bytes_per_token = 32 : i64}
  %q = vqt.linear %h, %w : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %a2 = vqt.attention %q, %q, %q causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  %p = vqt.pool mean %a2 : tensor<?x8xf32> -> tensor<8xf32>
  return %p : tensor<8xf32>
}
