// RUN: incnn-opt %s -canonicalize | FileCheck %s

// CHECK-LABEL: func.func @union_folds
// CHECK: %[[E:.*]] = delta.edited_rows
// CHECK: %[[S:.*]] = delta.shifted_rows
// CHECK-NEXT: %[[U:.*]] = delta.union %[[E]], %[[S]]{{$}}
// CHECK-NEXT: return %[[E]], %[[U]]
func.func @union_folds() -> (!delta.rows, !delta.rows) {
  %e = delta.edited_rows
  %s = delta.shifted_rows
  // A union of one set is that set.
  %single = delta.union %e
  // Nested unions flatten and duplicates go.
  %inner = delta.union %e, %s
  %outer = delta.union %inner, %e, %single
  return %single, %outer : !delta.rows, !delta.rows
}
