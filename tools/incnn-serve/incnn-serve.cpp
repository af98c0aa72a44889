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

#include "ToolOptions.h"

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
using incnn::tools::ToolCli;

namespace {

struct Options {
  std::string model, sample;
  ServeLimits limits;
  FrontOptions front;
  int64_t memoryBudgetMB = 2048;
};

Options parseArgs(int argc, char **argv) {
  Options o;
  o.limits.computeSlots =
      int(std::max(1u, std::thread::hardware_concurrency()));
  ToolCli cli("incnn-serve",
              "MODEL.incnn [--host H] [--port P] [--threads N]\n"
              "         [--max-documents N] [--memory-budget MB] "
              "[--max-tokens N]\n"
              "         [--request-timeout S] [--compute-slots N]\n"
              "         [--max-connections N] [--read-timeout S] "
              "[--keep-alive S]\n"
              "         [--remember-evicted N] [--allow-host NAME]...\n"
              "         [--allow-origin ORIGIN]... [--token TOKEN]\n"
              "         [--access-log FILE|-] [--sample TEXT_FILE]",
              "Keeps documents live over HTTP: clients post text edits and "
              "get the updated\noutput (docs/serve.md explains each option "
              "and the threat model).");
  cli.addModel(o.model);
  cli.addString("--host", o.front.host,
                "address to listen on (default 127.0.0.1; not loopback needs "
                "--token)",
                "H");
  cli.addInt("--port", o.front.port, 0, 65535,
             "port (default 8080; 0: any free port, printed)", "P");
  cli.addThreads(o.limits.threads);
  cli.addInt("--max-documents", o.limits.maxDocuments, 1, 1 << 20,
             "documents kept live (default 64)");
  cli.addInt("--memory-budget", o.memoryBudgetMB, 0, int64_t(1) << 30,
             "MB of process memory; least recently used documents are "
             "evicted past it (default 2048; 0: none)",
             "MB");
  cli.addInt("--max-tokens", o.limits.maxTokens, 1, int64_t(1) << 20,
             "tokens of one document (default 16384)");
  cli.addSeconds("--request-timeout", o.limits.requestSeconds, 0.05, 86400,
                 "a create's evaluation, and a wait for a compute slot "
                 "(default 30)");
  cli.addInt("--compute-slots", o.limits.computeSlots, 1, 256,
             "creates and edits computing at once (default: one per core)");
  cli.addInt("--max-connections", o.front.maxConnections, 1, 1024,
             "connections served at once (default 64)");
  cli.addSeconds("--read-timeout", o.front.readSeconds, 0.05, 86400,
                 "reading a request (default 10)");
  cli.addSeconds("--keep-alive", o.front.keepAliveSeconds, 0.05, 86400,
                 "an idle connection stays open (default 5)");
  cli.addInt("--remember-evicted", o.limits.rememberEvicted, 0, 1 << 24,
             "evicted ids that answer \"evicted\" (default 4096)");
  cli.addString("--token", o.front.token,
                "clients must send 'Authorization: Bearer TOKEN'", "TOKEN");
  cli.addString("--access-log", o.front.accessLog,
                "one JSON line per request to FILE ('-': stderr)", "FILE|-");
  cli.addStrings("--allow-host", o.front.allowHosts,
                 "a Host name answered besides loopback (repeatable)", "NAME");
  cli.addStrings("--allow-origin", o.front.allowOrigins,
                 "an origin whose pages may call the API (repeatable)",
                 "ORIGIN");
  cli.addString("--sample", o.sample, "the page's sample document",
                "TEXT_FILE");
  cli.parse(argc, argv);
  if (!isLoopback(o.front.host) && o.front.token.empty())
    cli.usageError("--host " + o.front.host +
                   " is not loopback: give --token TOKEN (clients then send "
                   "'Authorization: Bearer TOKEN')");
  o.limits.memoryBudget = o.memoryBudgetMB << 20;
  return o;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parseArgs(argc, argv);
  HttpFront::blockStopSignals();
  // Large buffers come from mmap and go back to the system when freed, so
  // the resident size the memory budget measures falls after an eviction.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  mallopt(M_ARENA_MAX, 4);
  Program program;
  if (Status st = loadProgram(o.model, program); !st.ok()) {
    std::fprintf(stderr, "incnn-serve: error: %s\n", st.error.c_str());
    return 1;
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (Status st = Tokenizer::create(program.tokenizer, tokenizer); !st.ok()) {
    std::fprintf(stderr, "incnn-serve: error: %s: %s\n", o.model.c_str(),
                 st.error.c_str());
    return 1;
  }
  std::string sample = "Type here, or load a sample document.";
  if (!o.sample.empty()) {
    std::ifstream in(o.sample, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in || ss.str().size() > kMaxTextBytes) {
      std::fprintf(stderr,
                   "incnn-serve: error: cannot read %s (at most %zu "
                   "bytes)\n",
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
                   "incnn-serve: error: --memory-budget %lld MB leaves no "
                   "room for "
                   "documents (the process takes %lld MB before any)\n",
                   (long long)o.memoryBudgetMB, (long long)(baseline >> 20));
      return 2;
    }
    if (fits < std::min<int64_t>(o.limits.maxTokens, program.maxPositions)) {
      std::fprintf(
          stderr,
          "incnn-serve: warning: --max-tokens lowered from %lld to %lld so "
          "that one document fits the memory budget\n",
          (long long)o.limits.maxTokens, (long long)fits);
      o.limits.maxTokens = fits;
    }
  }
  DocumentServer server(program, *tokenizer, o.limits);
  HttpFront front(server, o.front, kPageHtml, sample);
  int port = front.bind();
  if (port <= 0) {
    std::fprintf(stderr, "incnn-serve: error: cannot listen on %s:%d%s\n",
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
