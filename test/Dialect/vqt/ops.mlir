// RUN: incnn-opt %s | FileCheck %s
// RUN: incnn-opt %s | incnn-opt | FileCheck %s
// RUN: incnn-opt %s --mlir-print-op-generic | incnn-opt | FileCheck %s

// An OPT-style pre-LayerNorm decoder block with learned positions, ReLU MLP,
// VQ after attention, and a sequence-classifier head.
// CHECK-LABEL: func.func @opt_block
func.func @opt_block(%tokens: tensor<?xi32>) -> tensor<3xf32> {
  // CHECK: %[[EMB:.*]] = vqt.param "model.decoder.embed_tokens.weight" : tensor<97x64xf32>
  %emb = vqt.param "model.decoder.embed_tokens.weight" : tensor<97x64xf32>
  %pos_table = vqt.param "model.decoder.embed_positions.weight" : tensor<66x64xf32>
  // CHECK: %[[H0:.*]] = vqt.embed %{{.*}}, %[[EMB]] : tensor<97x64xf32> -> tensor<?x64xf32>
  %h0 = vqt.embed %tokens, %emb : tensor<97x64xf32> -> tensor<?x64xf32>
  // CHECK: vqt.add_positions %[[H0]], %{{.*}} {offset = 2 : i64} : tensor<?x64xf32>, tensor<66x64xf32>
  %x = vqt.add_positions %h0, %pos_table {offset = 2 : i64} : tensor<?x64xf32>, tensor<66x64xf32>

  %ln1_g = vqt.param "model.decoder.layers.0.self_attn_layer_norm.weight" : tensor<64xf32>
  %ln1_b = vqt.param "model.decoder.layers.0.self_attn_layer_norm.bias" : tensor<64xf32>
  // CHECK: vqt.layer_norm %{{.*}} {epsilon = 9.99999974E-6 : f32} : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
  %a = vqt.layer_norm %x, %ln1_g, %ln1_b {epsilon = 1.0e-05 : f32} : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
  %wq = vqt.param "model.decoder.layers.0.self_attn.q_proj.weight" : tensor<64x64xf32>
  %bq = vqt.param "model.decoder.layers.0.self_attn.q_proj.bias" : tensor<64xf32>
  %wk = vqt.param "model.decoder.layers.0.self_attn.k_proj.weight" : tensor<64x64xf32>
  %bk = vqt.param "model.decoder.layers.0.self_attn.k_proj.bias" : tensor<64xf32>
  %wv = vqt.param "model.decoder.layers.0.self_attn.v_proj.weight" : tensor<64x64xf32>
  %bv = vqt.param "model.decoder.layers.0.self_attn.v_proj.bias" : tensor<64xf32>
  // CHECK: %[[Q:.*]] = vqt.linear %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  %q = vqt.linear %a, %wq, %bq : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  %k = vqt.linear %a, %wk, %bk : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  %v = vqt.linear %a, %wv, %bv : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  // CHECK: vqt.attention %[[Q]], %{{.*}}, %{{.*}} causal {num_heads = 4 : i64, num_kv_heads = 4 : i64} : tensor<?x64xf32>, tensor<?x64xf32>
  %att = vqt.attention %q, %k, %v causal {num_heads = 4 : i64, num_kv_heads = 4 : i64} : tensor<?x64xf32>, tensor<?x64xf32>
  %wo = vqt.param "model.decoder.layers.0.self_attn.out_proj.weight" : tensor<64x64xf32>
  %bo = vqt.param "model.decoder.layers.0.self_attn.out_proj.bias" : tensor<64xf32>
  %o = vqt.linear %att, %wo, %bo : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  %cb = vqt.param "incnn.vq.0.attn_out.codebook" : tensor<4x16x16xf32>
  // CHECK: %[[VQ:.*]], %[[CODES:.*]] = vqt.vq %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<4x16x16xf32> -> tensor<?x4xi32>
  %oq, %codes = vqt.vq %o, %cb : tensor<?x64xf32>, tensor<4x16x16xf32> -> tensor<?x4xi32>
  // CHECK: %[[H:.*]] = vqt.add %{{.*}}, %[[VQ]] : tensor<?x64xf32>
  %h = vqt.add %x, %oq : tensor<?x64xf32>

  %ln2_g = vqt.param "model.decoder.layers.0.final_layer_norm.weight" : tensor<64xf32>
  %ln2_b = vqt.param "model.decoder.layers.0.final_layer_norm.bias" : tensor<64xf32>
  %m = vqt.layer_norm %h, %ln2_g, %ln2_b {epsilon = 1.0e-05 : f32} : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
  %w1 = vqt.param "model.decoder.layers.0.fc1.weight" : tensor<256x64xf32>
  %b1 = vqt.param "model.decoder.layers.0.fc1.bias" : tensor<256xf32>
  %w2 = vqt.param "model.decoder.layers.0.fc2.weight" : tensor<64x256xf32>
  %b2 = vqt.param "model.decoder.layers.0.fc2.bias" : tensor<64xf32>
  %f1 = vqt.linear %m, %w1, %b1 : tensor<?x64xf32>, tensor<256x64xf32>, tensor<256xf32> -> tensor<?x256xf32>
  // CHECK: vqt.relu %{{.*}} : tensor<?x256xf32>
  %r = vqt.relu %f1 : tensor<?x256xf32>
  %f2 = vqt.linear %r, %w2, %b2 : tensor<?x256xf32>, tensor<64x256xf32>, tensor<64xf32> -> tensor<?x64xf32>
  %y = vqt.add %h, %f2 : tensor<?x64xf32>

  %lnf_g = vqt.param "model.decoder.final_layer_norm.weight" : tensor<64xf32>
  %lnf_b = vqt.param "model.decoder.final_layer_norm.bias" : tensor<64xf32>
  %z = vqt.layer_norm %y, %lnf_g, %lnf_b {epsilon = 1.0e-05 : f32} : tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>
  // CHECK: %[[P:.*]] = vqt.pool last %{{.*}} : tensor<?x64xf32> -> tensor<64xf32>
  %p = vqt.pool last %z : tensor<?x64xf32> -> tensor<64xf32>
  %score = vqt.param "score.weight" : tensor<3x64xf32>
  // CHECK: %[[LOGITS:.*]] = vqt.linear %[[P]], %{{.*}} : tensor<64xf32>, tensor<3x64xf32> -> tensor<3xf32>
  %logits = vqt.linear %p, %score : tensor<64xf32>, tensor<3x64xf32> -> tensor<3xf32>
  // CHECK: return %[[LOGITS]]
  return %logits : tensor<3xf32>
}

// A Llama-style block: RMSNorm, rotary grouped-query attention, SwiGLU, and a
// mean-pooled head; VQ on the block output.
// CHECK-LABEL: func.func @llama_block
func.func @llama_block(%tokens: tensor<?xi32>) -> tensor<512xf32> {
  %emb = vqt.param "model.embed_tokens.weight" : tensor<512x64xf32>
  %x = vqt.embed %tokens, %emb : tensor<512x64xf32> -> tensor<?x64xf32>
  %g1 = vqt.param "model.layers.0.input_layernorm.weight" : tensor<64xf32>
  // CHECK: vqt.rms_norm %{{.*}}, %{{.*}} {epsilon = 9.99999974E-6 : f32} : tensor<?x64xf32>, tensor<64xf32>
  %a = vqt.rms_norm %x, %g1 {epsilon = 1.0e-05 : f32} : tensor<?x64xf32>, tensor<64xf32>
  %wq = vqt.param "model.layers.0.self_attn.q_proj.weight" : tensor<64x64xf32>
  %wk = vqt.param "model.layers.0.self_attn.k_proj.weight" : tensor<32x64xf32>
  %wv = vqt.param "model.layers.0.self_attn.v_proj.weight" : tensor<32x64xf32>
  // CHECK: %[[Q:.*]] = vqt.linear %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
  %q = vqt.linear %a, %wq : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
  %k = vqt.linear %a, %wk : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  %v = vqt.linear %a, %wv : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  // CHECK: vqt.attention %[[Q]], %{{.*}}, %{{.*}} causal {num_heads = 8 : i64, num_kv_heads = 4 : i64, rope_theta = 1.000000e+04 : f32} : tensor<?x64xf32>, tensor<?x32xf32>
  %att = vqt.attention %q, %k, %v causal {num_heads = 8 : i64, num_kv_heads = 4 : i64, rope_theta = 1.0e+04 : f32} : tensor<?x64xf32>, tensor<?x32xf32>
  %wo = vqt.param "model.layers.0.self_attn.o_proj.weight" : tensor<64x64xf32>
  %o = vqt.linear %att, %wo : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
  %h = vqt.add %x, %o : tensor<?x64xf32>
  %g2 = vqt.param "model.layers.0.post_attention_layernorm.weight" : tensor<64xf32>
  %m = vqt.rms_norm %h, %g2 {epsilon = 1.0e-05 : f32} : tensor<?x64xf32>, tensor<64xf32>
  %wg = vqt.param "model.layers.0.mlp.gate_proj.weight" : tensor<172x64xf32>
  %wu = vqt.param "model.layers.0.mlp.up_proj.weight" : tensor<172x64xf32>
  %wd = vqt.param "model.layers.0.mlp.down_proj.weight" : tensor<64x172xf32>
  %gate = vqt.linear %m, %wg : tensor<?x64xf32>, tensor<172x64xf32> -> tensor<?x172xf32>
  %up = vqt.linear %m, %wu : tensor<?x64xf32>, tensor<172x64xf32> -> tensor<?x172xf32>
  // CHECK: %[[S:.*]] = vqt.silu %{{.*}} : tensor<?x172xf32>
  %s = vqt.silu %gate : tensor<?x172xf32>
  // CHECK: vqt.mul %[[S]], %{{.*}} : tensor<?x172xf32>
  %su = vqt.mul %s, %up : tensor<?x172xf32>
  // Gated activations halve the width: [u | g] -> act(u) * g.
  %gu = vqt.linear %m, %wu : tensor<?x64xf32>, tensor<172x64xf32> -> tensor<?x172xf32>
  // CHECK: vqt.geglu %{{.*}} : tensor<?x172xf32> -> tensor<?x86xf32>
  %gg = vqt.geglu %gu : tensor<?x172xf32> -> tensor<?x86xf32>
  // CHECK: vqt.swiglu %{{.*}} : tensor<?x172xf32> -> tensor<?x86xf32>
  %sg = vqt.swiglu %gu : tensor<?x172xf32> -> tensor<?x86xf32>
  %d = vqt.linear %su, %wd : tensor<?x172xf32>, tensor<64x172xf32> -> tensor<?x64xf32>
  %y = vqt.add %h, %d : tensor<?x64xf32>
  %cb = vqt.param "incnn.vq.0.block_out.codebook" : tensor<2x8x32xf32>
  %yq, %codes = vqt.vq %y, %cb : tensor<?x64xf32>, tensor<2x8x32xf32> -> tensor<?x2xi32>
  %gf = vqt.param "model.norm.weight" : tensor<64xf32>
  %z = vqt.rms_norm %yq, %gf {epsilon = 1.0e-05 : f32} : tensor<?x64xf32>, tensor<64xf32>
  // CHECK: vqt.pool mean %{{.*}} : tensor<?x64xf32> -> tensor<64xf32>
  %p = vqt.pool mean %z : tensor<?x64xf32> -> tensor<64xf32>
  %head = vqt.param "lm_head.weight" : tensor<512x64xf32>
  %logits = vqt.linear %p, %head : tensor<64xf32>, tensor<512x64xf32> -> tensor<512xf32>
  return %logits : tensor<512xf32>
}

// CHECK-LABEL: func.func @gelu_and_bidirectional
func.func @gelu_and_bidirectional(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  // CHECK: vqt.gelu %{{.*}} : tensor<?x64xf32>
  %g = vqt.gelu %x : tensor<?x64xf32>
  // CHECK: vqt.attention %{{.*}} bidirectional {num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 5.000000e-01 : f32}
  %a = vqt.attention %g, %x, %x bidirectional {num_heads = 2 : i64, num_kv_heads = 2 : i64, scale = 0.5 : f32} : tensor<?x64xf32>, tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}
