//===- Status.cpp - status code names -------------------------------------===//
#include "incnn/runtime/Status.h"

namespace incnn::runtime {

const char *statusCodeName(StatusCode code) {
  switch (code) {
  case StatusCode::Ok:
    return "ok";
  case StatusCode::InvalidArgument:
    return "invalid_argument";
  case StatusCode::OutOfRange:
    return "out_of_range";
  case StatusCode::OutOfContract:
    return "out_of_contract";
  case StatusCode::ResourceExhausted:
    return "resource_exhausted";
  case StatusCode::IO:
    return "io";
  case StatusCode::Interrupted:
    return "interrupted";
  case StatusCode::Internal:
    return "internal";
  }
  return "unknown";
}

} // namespace incnn::runtime
