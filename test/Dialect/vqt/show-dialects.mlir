// RUN: incnn-opt --show-dialects | FileCheck %s
// CHECK: Available Dialects:
// CHECK-SAME: func
// CHECK-SAME: vqt
