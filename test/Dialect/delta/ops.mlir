// RUN: incnn-opt %s | FileCheck %s
// RUN: incnn-opt %s | incnn-opt | FileCheck %s
// RUN: incnn-opt %s --mlir-print-op-generic | incnn-opt | FileCheck %s

// CHECK-LABEL: func.func @steps
func.func @steps(%t: tensor<?xi32>) -> tensor<4xf32> {
  // CHECK: %[[E:.*]] = delta.edited_rows
  %e = delta.edited_rows
  // CHECK: %[[S:.*]] = delta.shifted_rows
  %s = delta.shifted_rows
  %table = vqt.param "e" : tensor<16x8xf32>
  %cb = vqt.param "cb" : tensor<2x4x4xf32>
  %head = vqt.param "h" : tensor<4x8xf32>
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  // CHECK: %[[RX:.*]] = delta.recompute_rows %{{.*}} rows %[[E]] : tensor<?x8xf32>
  %rx = delta.recompute_rows %x rows %e : tensor<?x8xf32>
  // CHECK: delta.cache %{{.*}} {bytes_per_token = 32 : i64} : tensor<?x8xf32>
  delta.cache %x {bytes_per_token = 32 : i64} : tensor<?x8xf32>
  %a = vqt.attention %x, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: %[[U:.*]] = delta.union %[[RX]], %[[S]]
  %u = delta.union %rx, %s
  // CHECK: %[[RA:.*]] = delta.attention_update %{{.*}} query %[[RX]] keys %[[U]] : tensor<?x8xf32>
  %ra = delta.attention_update %a query %rx keys %u : tensor<?x8xf32>
  %q, %c = vqt.vq %a, %cb : tensor<?x8xf32>, tensor<2x4x4xf32> -> tensor<?x2xi32>
  // CHECK: %[[RQ:.*]] = delta.vq_cutoff %{{.*}} rows %[[RA]] : tensor<?x8xf32>
  %rq = delta.vq_cutoff %q rows %ra : tensor<?x8xf32>
  %p = vqt.pool mean %q : tensor<?x8xf32> -> tensor<8xf32>
  // CHECK: %[[RP:.*]] = delta.pool_update %{{.*}} rows %[[RQ]] : tensor<8xf32>
  %rp = delta.pool_update %p rows %rq : tensor<8xf32>
  %l = vqt.linear %p, %head : tensor<8xf32>, tensor<4x8xf32> -> tensor<4xf32>
  // CHECK: %[[RL:.*]] = delta.vector_update %{{.*}} rows %[[RP]] : tensor<4xf32>
  %rl = delta.vector_update %l rows %rp : tensor<4xf32>
  // CHECK: delta.output %{{.*}} rows %[[RL]] : tensor<4xf32>
  delta.output %l rows %rl : tensor<4xf32>
  // CHECK: delta.union{{ *$}}
  %empty = delta.union
  return %l : tensor<4xf32>
}
