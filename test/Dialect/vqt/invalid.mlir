// RUN: incnn-opt %s -split-input-file -verify-diagnostics

func.func @empty_param_name() {
  // expected-error @+1 {{weight name must not be empty}}
  %w = vqt.param "" : tensor<4xf32>
  return
}

// -----

func.func @embed_width(%t: tensor<?xi32>) {
  %e = vqt.param "e" : tensor<10x8xf32>
  // expected-error @+1 {{result width 16 does not match table width 8}}
  %h = vqt.embed %t, %e : tensor<10x8xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @embed_table_rank(%t: tensor<?xi32>) {
  %e = vqt.param "e" : tensor<8xf32>
  // expected-error @+1 {{table must be [vocab, width]}}
  %h = vqt.embed %t, %e : tensor<8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @rows_need_token_axis(%x: tensor<4x8xf32>) {
  // expected-error @+1 {{must be token rows tensor<?xDxf32> or vector tensor<Dxf32>}}
  %y = vqt.relu %x : tensor<4x8xf32>
  return
}

// -----

func.func @positions_width(%x: tensor<?x8xf32>) {
  %p = vqt.param "p" : tensor<10x4xf32>
  // expected-error @+1 {{table must be [positions, 8]}}
  %y = vqt.add_positions %x, %p {offset = 2 : i64} : tensor<?x8xf32>, tensor<10x4xf32>
  return
}

// -----

func.func @positions_offset(%x: tensor<?x8xf32>) {
  %p = vqt.param "p" : tensor<10x8xf32>
  // expected-error @+1 {{offset 10 out of range for a table of 10 rows}}
  %y = vqt.add_positions %x, %p {offset = 10 : i64} : tensor<?x8xf32>, tensor<10x8xf32>
  return
}

// -----

func.func @layer_norm_gamma(%x: tensor<?x8xf32>) {
  %g = vqt.param "g" : tensor<4xf32>
  // expected-error @+1 {{gamma must be tensor<8xf32>}}
  %y = vqt.layer_norm %x, %g, %g {epsilon = 1.0e-05 : f32} : tensor<?x8xf32>, tensor<4xf32>, tensor<4xf32>
  return
}

// -----

func.func @norm_epsilon(%x: tensor<?x8xf32>) {
  %g = vqt.param "g" : tensor<8xf32>
  // expected-error @+1 {{epsilon must be positive}}
  %y = vqt.rms_norm %x, %g {epsilon = 0.0 : f32} : tensor<?x8xf32>, tensor<8xf32>
  return
}

// -----

func.func @linear_in_width(%x: tensor<?x8xf32>) {
  %w = vqt.param "w" : tensor<16x4xf32>
  // expected-error @+1 {{weight input width 4 does not match input width 8}}
  %y = vqt.linear %x, %w : tensor<?x8xf32>, tensor<16x4xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @linear_out_width(%x: tensor<?x8xf32>) {
  %w = vqt.param "w" : tensor<16x8xf32>
  // expected-error @+1 {{weight output width 16 does not match result width 12}}
  %y = vqt.linear %x, %w : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x12xf32>
  return
}

// -----

func.func @linear_bias(%x: tensor<?x8xf32>) {
  %w = vqt.param "w" : tensor<16x8xf32>
  %b = vqt.param "b" : tensor<8xf32>
  // expected-error @+1 {{bias must be tensor<16xf32>}}
  %y = vqt.linear %x, %w, %b : tensor<?x8xf32>, tensor<16x8xf32>, tensor<8xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @linear_rows_to_vector(%x: tensor<?x8xf32>) {
  %w = vqt.param "w" : tensor<16x8xf32>
  // expected-error @+1 {{input and result must both be token rows or both be vectors}}
  %y = vqt.linear %x, %w : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<16xf32>
  return
}

// -----

func.func @attention_heads_divide(%q: tensor<?x64xf32>, %k: tensor<?x48xf32>) {
  // expected-error @+1 {{num_heads (8) must be a multiple of num_kv_heads (3)}}
  %a = vqt.attention %q, %k, %k causal {num_heads = 8 : i64, num_kv_heads = 3 : i64} : tensor<?x64xf32>, tensor<?x48xf32>
  return
}

// -----

func.func @attention_query_width(%q: tensor<?x60xf32>, %k: tensor<?x60xf32>) {
  // expected-error @+1 {{query width 60 is not divisible by num_heads 8}}
  %a = vqt.attention %q, %k, %k causal {num_heads = 8 : i64, num_kv_heads = 8 : i64} : tensor<?x60xf32>, tensor<?x60xf32>
  return
}

// -----

func.func @attention_kv_width(%q: tensor<?x64xf32>, %k: tensor<?x64xf32>) {
  // expected-error @+1 {{key/value width 64 must be num_kv_heads * head_dim = 32}}
  %a = vqt.attention %q, %k, %k causal {num_heads = 8 : i64, num_kv_heads = 4 : i64} : tensor<?x64xf32>, tensor<?x64xf32>
  return
}

// -----

func.func @attention_nonpositive_heads(%q: tensor<?x64xf32>) {
  // expected-error @+1 {{num_heads and num_kv_heads must be positive}}
  %a = vqt.attention %q, %q, %q causal {num_heads = 0 : i64, num_kv_heads = 4 : i64} : tensor<?x64xf32>, tensor<?x64xf32>
  return
}

// -----

func.func @attention_rope_odd(%q: tensor<?x12xf32>) {
  // expected-error @+1 {{rotary embedding needs an even head_dim, got 3}}
  %a = vqt.attention %q, %q, %q causal {num_heads = 4 : i64, num_kv_heads = 4 : i64, rope_theta = 1.0e+04 : f32} : tensor<?x12xf32>, tensor<?x12xf32>
  return
}

// -----

func.func @attention_rope_theta(%q: tensor<?x16xf32>) {
  // expected-error @+1 {{rope_theta must be positive}}
  %a = vqt.attention %q, %q, %q causal {num_heads = 4 : i64, num_kv_heads = 4 : i64, rope_theta = -1.0 : f32} : tensor<?x16xf32>, tensor<?x16xf32>
  return
}

// -----

func.func @attention_mask(%q: tensor<?x16xf32>) {
  // expected-error @+1 {{expected string or keyword containing one of the following enum values for attribute 'mask' [causal, bidirectional]}}
  %a = vqt.attention %q, %q, %q sliding {num_heads = 4 : i64, num_kv_heads = 4 : i64} : tensor<?x16xf32>, tensor<?x16xf32>
  return
}

// -----

func.func @vq_codebook_split(%x: tensor<?x64xf32>) {
  %cb = vqt.param "cb" : tensor<4x16x8xf32>
  // expected-error @+1 {{does not split a row of width 64 into groups}}
  %y, %c = vqt.vq %x, %cb : tensor<?x64xf32>, tensor<4x16x8xf32> -> tensor<?x4xi32>
  return
}

// -----

func.func @vq_codebook_rank(%x: tensor<?x64xf32>) {
  %cb = vqt.param "cb" : tensor<16x64xf32>
  // expected-error @+1 {{codebook must be [groups, codes, width / groups]}}
  %y, %c = vqt.vq %x, %cb : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<?x1xi32>
  return
}

// -----

func.func @vq_codes_columns(%x: tensor<?x64xf32>) {
  %cb = vqt.param "cb" : tensor<4x16x16xf32>
  // expected-error @+1 {{codes must have one column per group (4)}}
  %y, %c = vqt.vq %x, %cb : tensor<?x64xf32>, tensor<4x16x16xf32> -> tensor<?x2xi32>
  return
}

// -----

func.func @pool_width(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{result width 32 does not match input width 64}}
  %p = vqt.pool last %x : tensor<?x64xf32> -> tensor<32xf32>
  return
}

// -----

func.func @pool_kind(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{expected string or keyword containing one of the following enum values for attribute 'kind' [last, mean, first]}}
  %p = vqt.pool max %x : tensor<?x64xf32> -> tensor<64xf32>
  return
}

// -----

func.func @weight_must_be_static() {
  // expected-error @+1 {{must be static f32 tensor}}
  %w = vqt.param "w" : tensor<?x4xf32>
  return
}

// -----

func.func @gated_halves_the_width(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{input width 8 must be twice the result width 8}}
  %y = vqt.geglu %x : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @gated_keeps_the_kind(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{input and result must both be token rows or both be vectors}}
  %y = vqt.swiglu %x : tensor<?x8xf32> -> tensor<4xf32>
  return
}
