// RUN: incnn-opt %s --vqt-annotate-change-sources | FileCheck %s

// CHECK-LABEL: func.func @sources
func.func @sources(%t: tensor<?xi32>) -> tensor<?x8xf32> {
  %table = vqt.param "e" : tensor<16x8xf32>
  %cb = vqt.param "cb" : tensor<2x4x4xf32>
  // CHECK: vqt.param "e" {vqt.change_sources = []}
  // CHECK: vqt.embed {{.*}} {vqt.change_sources = ["edited"], vqt.keep_all_rows}
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  // CHECK: vqt.attention {{.*}} vqt.change_sources = ["vqt.attention#3"]
  %a = vqt.attention %x, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: vqt.vq {{.*}} {vqt.change_sources = ["vqt.vq#4"], vqt.keep_all_rows}
  %vq, %codes = vqt.vq %a, %cb : tensor<?x8xf32>, tensor<2x4x4xf32> -> tensor<?x2xi32>
  // CHECK: vqt.add {{.*}} {vqt.change_sources = ["edited", "vqt.vq#4"]}
  %h = vqt.add %x, %vq : tensor<?x8xf32>
  // A per-token result is read at every row after every edit: kept.
  // CHECK: vqt.relu {{.*}} {vqt.change_sources = ["edited", "vqt.vq#4"], vqt.keep_all_rows}
  %r = vqt.relu %h : tensor<?x8xf32>
  return %r : tensor<?x8xf32>
}
