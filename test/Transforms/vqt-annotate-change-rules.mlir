// RUN: incnn-opt %s --vqt-annotate-change-rules | FileCheck %s

// CHECK-LABEL: func.func @rules
func.func @rules(%t: tensor<?xi32>) -> tensor<8xf32> {
  // CHECK: vqt.param "e" {vqt.change_rule = "constant"}
  %e = vqt.param "e" : tensor<16x8xf32>
  %p = vqt.param "p" : tensor<20x8xf32>
  %cb = vqt.param "cb" : tensor<2x4x4xf32>
  // CHECK: vqt.embed {{.*}} {vqt.change_rule = "token-local"}
  %x = vqt.embed %t, %e : tensor<16x8xf32> -> tensor<?x8xf32>
  // CHECK: vqt.add_positions {{.*}} {offset = 2 : i64, vqt.change_rule = "token-local", vqt.position_dependent}
  %y = vqt.add_positions %x, %p {offset = 2 : i64} : tensor<?x8xf32>, tensor<20x8xf32>
  // CHECK: vqt.attention {{.*}} causal {num_heads = 2 : i64, num_kv_heads = 2 : i64, vqt.change_rule = "token-mixing"}
  %a = vqt.attention %y, %y, %y causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: vqt.attention {{.*}} {num_heads = 2 : i64, num_kv_heads = 2 : i64, rope_theta = {{.*}}, vqt.change_rule = "token-mixing", vqt.position_dependent}
  %r = vqt.attention %a, %a, %a causal {num_heads = 2 : i64, num_kv_heads = 2 : i64, rope_theta = 1.0e+04 : f32} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: vqt.vq {{.*}} {vqt.change_rule = "quantizing"}
  %q, %c = vqt.vq %r, %cb : tensor<?x8xf32>, tensor<2x4x4xf32> -> tensor<?x2xi32>
  // CHECK: vqt.pool {{.*}} {vqt.change_rule = "reducing"}
  %v = vqt.pool mean %q : tensor<?x8xf32> -> tensor<8xf32>
  return %v : tensor<8xf32>
}
