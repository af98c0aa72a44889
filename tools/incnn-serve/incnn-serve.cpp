//===- incnn-serve.cpp - keep documents live over HTTP --------------------===//
//
//   incnn-serve MODEL.incnn [--host 127.0.0.1] [--port 8080] [options]
//
// One process holds many documents, each an incremental session over the
// one loaded program (weights mapped once and shared). Clients create a
// document from its text, post text edits (UTF-8 byte offsets) and get the
// updated output with what the update cost. The API and the threat model
// are in docs/serve.md; ServeApi.h is the API, HttpFront.h the transport.
//
//===----------------------------------------------------------------------===//

#include "HttpFront.h"
#include "ServeApi.h"

#include "incnn/runtime/Limits.h"

#include "page.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <malloc.h>
#include <sstream>
#include <string>
#include <thread>

using namespace incnn::runtime;
using namespace incnn::serve;

namespace {

struct Options {
  std::string model, sample;
  ServeLimits limits;
  FrontOptions front;
  int64_t memoryBudgetMB = 2048;
};

[[noreturn]] void usage(const std::string &error) {
  std::fprintf(
      stderr,
      "incnn-serve: %s\n"
      "usage: incnn-serve MODEL.incnn [--host H] [--port P] [--threads T]\n"
      "         [--max-documents N] [--memory-budget MB] [--max-tokens N]\n"
      "         [--request-timeout S] [--compute-slots N]\n"
      "         [--max-connections N] [--read-timeout S] [--keep-alive S]\n"
      "         [--remember-evicted N] [--allow-host NAME]...\n"
      "         [--allow-origin ORIGIN]... [--token TOKEN]\n"
      "         [--access-log FILE|-]\n"
      "         [--sample TEXT_FILE]\n"
      "(docs/serve.md explains each option and the threat model)\n",
      error.c_str());
  std::exit(2);
}

Options parseArgs(int argc, char **argv) {
  Options o;
  o.limits.computeSlots =
      int(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](int64_t lo, int64_t hi) {
      std::string v = value();
      char *end = nullptr;
      long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || n < lo || n > hi)
        usage(a + " must be an integer in [" + std::to_string(lo) + ", " +
              std::to_string(hi) + "], got '" + v + "'");
      return int64_t(n);
    };
    auto seconds = [&]() {
      std::string v = value();
      char *end = nullptr;
      double s = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || !(s >= 0.05 && s <= 86400))
        usage(a + " must be a number of seconds in [0.05, 86400], got '" + v +
              "'");
      return s;
    };
    if (a == "--host")
      o.front.host = value();
    else if (a == "--sample")
      o.sample = value();
    else if (a == "--port")
      o.front.port = int(number(0, 65535));
    else if (a == "--threads")
      o.limits.threads = int(number(0, 256));
    else if (a == "--max-documents")
      o.limits.maxDocuments = number(1, 1 << 20);
    else if (a == "--memory-budget")
      o.memoryBudgetMB = number(0, int64_t(1) << 30);
    else if (a == "--max-tokens")
      o.limits.maxTokens = number(1, int64_t(1) << 20);
    else if (a == "--request-timeout")
      o.limits.requestSeconds = seconds();
    else if (a == "--compute-slots")
      o.limits.computeSlots = int(number(1, 256));
    else if (a == "--max-connections")
      o.front.maxConnections = int(number(1, 1024));
    else if (a == "--read-timeout")
      o.front.readSeconds = seconds();
    else if (a == "--keep-alive")
      o.front.keepAliveSeconds = seconds();
    else if (a == "--remember-evicted")
      o.limits.rememberEvicted = number(0, 1 << 24);
    else if (a == "--token")
      o.front.token = value();
    else if (a == "--access-log")
      o.front.accessLog = value();
    else if (a == "--allow-host")
      o.front.allowHosts.push_back(value());
    else if (a == "--allow-origin")
      o.front.allowOrigins.push_back(value());
    else if (a == "-h" || a == "--help")
      usage("help");
    else if (!a.empty() && a[0] == '-')
      usage("unknown option " + a);
    else if (o.model.empty())
      o.model = a;
    else
      usage("one model only");
  }
  if (o.model.empty())
    usage("no model given");
  if (!isLoopback(o.front.host) && o.front.token.empty())
    usage("--host " + o.front.host +
          " is not loopback: give --token TOKEN (clients then send "
          "'Authorization: Bearer TOKEN')");
  o.limits.memoryBudget = o.memoryBudgetMB << 20;
  return o;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parseArgs(argc, argv);
  // Large buffers come from mmap and go back to the system when freed, so
  // the resident size the memory budget measures falls after an eviction.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  mallopt(M_ARENA_MAX, 4);
  Program program;
  if (Status st = loadProgram(o.model, program); !st.ok()) {
    std::fprintf(stderr, "incnn-serve: %s\n", st.error.c_str());
    return 1;
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (Status st = Tokenizer::create(program.tokenizer, tokenizer); !st.ok()) {
    std::fprintf(stderr, "incnn-serve: %s: %s\n", o.model.c_str(),
                 st.error.c_str());
    return 1;
  }
  std::string sample = "Type here, or load a sample document.";
  if (!o.sample.empty()) {
    std::ifstream in(o.sample, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in || ss.str().size() > kMaxTextBytes) {
      std::fprintf(stderr, "incnn-serve: cannot read %s (at most %zu bytes)\n",
                   o.sample.c_str(), kMaxTextBytes);
      return 1;
    }
    sample = ss.str();
  }
  if (o.limits.memoryBudget > 0) {
    // One document of --max-tokens must fit: lower the token limit if not.
    int64_t baseline = residentBytes();
    int64_t room = o.limits.memoryBudget - baseline;
    int64_t fits = room > 0 ? room / peakBytesPerToken(program) : 0;
    if (fits < 256) {
      std::fprintf(stderr,
                   "incnn-serve: --memory-budget %lld MB leaves no room for "
                   "documents (the process takes %lld MB before any)\n",
                   (long long)o.memoryBudgetMB, (long long)(baseline >> 20));
      return 2;
    }
    if (fits < std::min<int64_t>(o.limits.maxTokens, program.maxPositions)) {
      std::fprintf(stderr,
                   "incnn-serve: --max-tokens lowered from %lld to %lld so "
                   "that one document fits the memory budget\n",
                   (long long)o.limits.maxTokens, (long long)fits);
      o.limits.maxTokens = fits;
    }
  }
  DocumentServer server(program, *tokenizer, o.limits);
  HttpFront front(server, o.front, kPageHtml, sample);
  int port = front.bind();
  if (port <= 0) {
    std::fprintf(stderr, "incnn-serve: cannot listen on %s:%d%s\n",
                 o.front.host.c_str(), o.front.port,
                 o.front.accessLog.empty()
                     ? ""
                     : (" (or cannot open " + o.front.accessLog + ")").c_str());
    return 1;
  }
  if (!isLoopback(o.front.host))
    std::fprintf(stderr,
                 "incnn-serve: warning: listening on %s, not loopback: "
                 "anyone who reaches this port and knows the --token can "
                 "read and change every document; put TLS in front of it "
                 "(see docs/serve.md)\n",
                 o.front.host.c_str());
  // The page takes the token from the URL's fragment (never sent over the
  // network by the browser).
  std::string fragment = o.front.token.empty() ? "" : "#token=" + o.front.token;
  std::printf("incnn-serve: %s on http://%s:%d/%s (%zu labels, window %lld, "
              "at most %lld tokens a document)\n",
              o.model.c_str(), o.front.host.c_str(), port, fragment.c_str(),
              program.labels.size(), (long long)program.maxPositions,
              (long long)server.limits().maxTokens);
  std::fflush(stdout);
  front.run();
  std::fprintf(stderr, "incnn-serve: stopped\n");
  return 0;
}
