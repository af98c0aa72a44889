// RUN: incnn-opt %s -split-input-file -verify-diagnostics

func.func @recompute_mixing(%x: tensor<?x8xf32>) {
  %e = delta.edited_rows
  %a = vqt.attention %x, %x, %x causal {num_heads = 2 : i64, num_kv_heads = 2 : i64} : tensor<?x8xf32>, tensor<?x8xf32>
  // expected-error @+1 {{needs a token-local op, but 'vqt.attention' is token-mixing}}
  %r = delta.recompute_rows %a rows %e : tensor<?x8xf32>
  return
}

// -----

func.func @attention_on_local(%x: tensor<?x8xf32>) {
  %e = delta.edited_rows
  %y = vqt.relu %x : tensor<?x8xf32>
  // expected-error @+1 {{needs a token-mixing op, but 'vqt.relu' is token-local}}
  %r = delta.attention_update %y query %e keys %e : tensor<?x8xf32>
  return
}

// -----

func.func @cutoff_on_local(%x: tensor<?x8xf32>) {
  %e = delta.edited_rows
  %y = vqt.relu %x : tensor<?x8xf32>
  // expected-error @+1 {{needs a quantizing op, but 'vqt.relu' is token-local}}
  %r = delta.vq_cutoff %y rows %e : tensor<?x8xf32>
  return
}

// -----

func.func @pool_on_local(%x: tensor<?x8xf32>) {
  %e = delta.edited_rows
  %y = vqt.relu %x : tensor<?x8xf32>
  // expected-error @+1 {{needs a reducing op, but 'vqt.relu' is token-local}}
  %r = delta.pool_update %y rows %e : tensor<?x8xf32>
  return
}

// -----

func.func @step_on_argument(%x: tensor<?x8xf32>) {
  %e = delta.edited_rows
  // expected-error @+1 {{updates a value that no vqt op defines}}
  %r = delta.recompute_rows %x rows %e : tensor<?x8xf32>
  return
}
