//===- HttpFront.h - incnn-serve's HTTP transport under hostile use -------===//
//
// cpp-httplib (Debian's libcpp-httplib-dev) parses HTTP; this layer decides
// who is answered and for how long a connection may hold a worker:
//   * at most `maxConnections` connections at once, each with a worker;
//     one more is answered 503 at once and closed;
//   * a request (headers and body) must arrive within `readSeconds` of its
//     first byte, an idle keep-alive connection closes after
//     `keepAliveSeconds`, and a response must be taken within
//     `writeSeconds`, so slow clients cannot hold the workers;
//   * the Host header must name this server (DNS rebinding), a request
//     carrying an Origin must come from the page itself or an allowed
//     origin (other web sites), and bodies must be application/json (no
//     form posts from foreign pages);
//   * SIGTERM or SIGINT stops accepting, lets requests in flight finish and
//     returns from run().
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_TOOLS_SERVE_HTTPFRONT_H
#define INCNN_TOOLS_SERVE_HTTPFRONT_H

#include "ServeApi.h"

#include <memory>
#include <string>
#include <vector>

namespace incnn::serve {

struct FrontOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  int maxConnections = 64;
  double readSeconds = 10, keepAliveSeconds = 5, writeSeconds = 10;
  /// Host names answered besides the loopback names and the bound address.
  std::vector<std::string> allowHosts;
  /// Origins (scheme://host[:port]) whose pages may call the API.
  std::vector<std::string> allowOrigins;
  /// When set, every request but the page needs `Authorization: Bearer
  /// token` (401 otherwise).
  std::string token;
  /// One JSON line per request goes here ("-": stderr; "": nowhere).
  std::string accessLog;
};

/// True for 127.0.0.0/8, ::1 and "localhost".
bool isLoopback(const std::string &host);

class HttpFront {
public:
  /// `api` must outlive the front. `page` is served at /, `sample` (a
  /// text) at /v1/sample.
  HttpFront(DocumentServer &api, FrontOptions options, std::string page,
            std::string sample);
  ~HttpFront();

  /// Binds; returns the port (the chosen one for port 0), or -1. Fails
  /// too when the access log cannot be opened.
  int bind();
  /// Serves until stop() or SIGTERM/SIGINT; returns once requests in flight
  /// have been answered.
  void run();
  void stop();
  /// Blocks SIGTERM/SIGINT in the calling thread; called before any thread
  /// starts, so that every thread inherits the mask and run()'s waiter alone
  /// takes them (a signal before run() waits until then).
  static void blockStopSignals();

private:
  class Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace incnn::serve

#endif // INCNN_TOOLS_SERVE_HTTPFRONT_H
