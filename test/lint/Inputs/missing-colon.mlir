// A directive without its colon checks nothing; the lint must reject this file.
// RUN: true
// CHECK-NOT foo
