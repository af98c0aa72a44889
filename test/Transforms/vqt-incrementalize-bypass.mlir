// RUN: incnn-opt %s --vqt-incrementalize --split-input-file -verify-diagnostics | FileCheck %s

// Two attention layers, VQ only after the second: its rows are added to a
// residual stream that already carries the first attention's full change, so
// the quantizer stops nothing and the compiler says so.
// CHECK-LABEL: func.func @second_layer_only
func.func @second_layer_only(%t: tensor<?xi32>) -> tensor<?x8xf32> {
  %table = vqt.param "e" : tensor<16x8xf32>
  %cb = vqt.param "cb" : tensor<1x4x8xf32>
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  // expected-note @below {{the unquantized token-mixing op}}
  %a0 = vqt.attention %x, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  %h0 = vqt.add %x, %a0 : tensor<?x8xf32>
  %a1 = vqt.attention %h0, %h0, %h0 causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // expected-warning @below {{this quantizer cuts no work: every use of its rows is combined with the unquantized result of vqt.attention#}}
  %vq, %codes = vqt.vq %a1, %cb : tensor<?x8xf32>, tensor<1x4x8xf32> -> tensor<?x1xi32>
  // The path through a token-local op is followed to the residual add.
  %r = vqt.relu %vq : tensor<?x8xf32>
  %h1 = vqt.add %h0, %r : tensor<?x8xf32>
  // CHECK: delta.vq_cutoff
  return %h1 : tensor<?x8xf32>
}

// -----

// VQ after both attentions: each quantizer keeps rows clean downstream.
// CHECK-LABEL: func.func @every_layer
func.func @every_layer(%t: tensor<?xi32>) -> tensor<?x8xf32> {
  %table = vqt.param "e" : tensor<16x8xf32>
  %cb = vqt.param "cb" : tensor<1x4x8xf32>
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  %a0 = vqt.attention %x, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  %v0, %c0 = vqt.vq %a0, %cb : tensor<?x8xf32>, tensor<1x4x8xf32> -> tensor<?x1xi32>
  %h0 = vqt.add %x, %v0 : tensor<?x8xf32>
  %a1 = vqt.attention %h0, %h0, %h0 causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  %v1, %c1 = vqt.vq %a1, %cb : tensor<?x8xf32>, tensor<1x4x8xf32> -> tensor<?x1xi32>
  %h1 = vqt.add %h0, %v1 : tensor<?x8xf32>
  // CHECK-COUNT-2: delta.vq_cutoff
  return %h1 : tensor<?x8xf32>
}

// -----

// A quantizer read directly by a token-mixing op is useful even when its
// residual partner is dirty everywhere: the next attention sees fewer changed
// keys.
// CHECK-LABEL: func.func @feeds_attention
func.func @feeds_attention(%t: tensor<?xi32>) -> tensor<?x8xf32> {
  %table = vqt.param "e" : tensor<16x8xf32>
  %cb = vqt.param "cb" : tensor<1x4x8xf32>
  %x = vqt.embed %t, %table : tensor<16x8xf32> -> tensor<?x8xf32>
  %a0 = vqt.attention %x, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  %v0, %c0 = vqt.vq %a0, %cb : tensor<?x8xf32>, tensor<1x4x8xf32> -> tensor<?x1xi32>
  %a1 = vqt.attention %v0, %v0, %v0 causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  %h = vqt.add %a0, %a1 : tensor<?x8xf32>
  // CHECK: delta.vq_cutoff
  return %h : tensor<?x8xf32>
}
