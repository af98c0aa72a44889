//===- HttpFront.cpp - incnn-serve's HTTP transport under hostile use -----===//
#include "HttpFront.h"

#include "incnn/runtime/Limits.h"
#include "incnn/runtime/Serialize.h"

#include <httplib.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <deque>
#include <limits>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace incnn::serve {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string lower(std::string s) {
  for (char &c : s)
    if (c >= 'A' && c <= 'Z')
      c = char(c - 'A' + 'a');
  return s;
}

/// A socket whose reads and writes fail once a deadline passes, however
/// slowly the peer trickles bytes.
class DeadlineStream : public httplib::Stream {
public:
  explicit DeadlineStream(int fd) : fd(fd) {}

  void arm(double seconds) {
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(seconds));
  }
  void disarm() { deadline = Clock::time_point::max(); }
  bool expired() const { return Clock::now() >= deadline; }

  /// Waits until the socket is ready for `events` or the deadline passes.
  bool wait(short events) const {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - Clock::now())
                      .count();
      if (left <= 0)
        return false;
      pollfd p{fd, events, 0};
      int r = ::poll(&p, 1, int(std::min<long long>(left, 1000)));
      if (r > 0)
        return true;
      if (r < 0 && errno != EINTR)
        return false;
    }
  }

  /// True when the peer has closed its side (its request is abandoned).
  bool peerGone() const {
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 &&
           (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
  }

  bool is_readable() const override { return wait(POLLIN); }
  bool is_writable() const override { return wait(POLLOUT); }
  ssize_t read(char *ptr, size_t size) override {
    if (!wait(POLLIN))
      return -1;
    ssize_t r;
    do
      r = ::recv(fd, ptr, size, 0);
    while (r < 0 && errno == EINTR);
    return r;
  }
  ssize_t write(const char *ptr, size_t size) override {
    if (!wait(POLLOUT))
      return -1;
    ssize_t r;
    do
      r = ::send(fd, ptr, size, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r;
  }
  void get_remote_ip_and_port(std::string &ip, int &port) const override {
    address(::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string &ip, int &port) const override {
    address(::getsockname, ip, port);
  }
  socket_t socket() const override { return fd; }

private:
  template <class Get> void address(Get get, std::string &ip, int &port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    char buf[INET6_ADDRSTRLEN] = "";
    port = 0;
    if (get(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0)
      return;
    if (addr.ss_family == AF_INET) {
      auto *a = reinterpret_cast<sockaddr_in *>(&addr);
      inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      auto *a = reinterpret_cast<sockaddr_in6 *>(&addr);
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
      port = ntohs(a->sin6_port);
    }
    ip = buf;
  }

  int fd;
  Clock::time_point deadline = Clock::time_point::max();
};

/// The connection the current worker serves (null outside a connection).
thread_local DeadlineStream *currentStream = nullptr;
/// Set while the accept thread hands a connection over the cap.
thread_local bool rejectingConnection = false;
/// When the current request's headers were read.
thread_local Clock::time_point requestStart;
/// The route the current request was counted under by the front.
thread_local const char *frontRoute = nullptr;

/// Equal strings, compared in time independent of where they differ.
bool sameSecret(const std::string &a, const std::string &b) {
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::string utcNow() {
  char buf[40];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return buf;
}

/// One worker per connection, `size` of them; a connection that finds none
/// idle is rejected at once.
class ConnectionPool : public httplib::TaskQueue {
public:
  explicit ConnectionPool(int size) {
    for (int i = 0; i < size; ++i)
      workers.emplace_back([this] { work(); });
  }
  ~ConnectionPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (busy + jobs.size() < workers.size()) {
        jobs.push_back(std::move(fn));
        ready.notify_one();
        return;
      }
    }
    rejectingConnection = true; // fn answers 503 without reading
    fn();
    rejectingConnection = false;
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (stopping)
        return;
      stopping = true;
    }
    ready.notify_all();
    for (std::thread &t : workers)
      t.join();
  }

private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mutex);
        ready.wait(lock, [&] { return stopping || !jobs.empty(); });
        if (jobs.empty())
          return;
        fn = std::move(jobs.front());
        jobs.pop_front();
        ++busy;
      }
      fn();
      std::lock_guard<std::mutex> lock(mutex);
      --busy;
    }
  }

  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::function<void()>> jobs;
  size_t busy = 0;
  bool stopping = false;
};

const char *messageFor(int status) {
  switch (status) {
  case 400:
    return "malformed HTTP request";
  case 404:
    return "no such endpoint";
  case 413:
    return "the request body is too large";
  case 414:
    return "the request line is too long";
  case 416:
    return "Range requests are not supported";
  case 503:
    return "too many connections (--max-connections)";
  case 431:
    return "the request headers are too large";
  default:
    return "the request failed";
  }
}

} // namespace

bool isLoopback(const std::string &host) {
  std::string h = lower(host);
  if (h == "localhost" || h == "::1" || h == "[::1]")
    return true;
  in_addr a{};
  return inet_pton(AF_INET, h.c_str(), &a) == 1 &&
         (ntohl(a.s_addr) >> 24) == 127;
}

class HttpFront::Impl : public httplib::Server {
public:
  Impl(DocumentServer &api, FrontOptions options, std::string page,
       std::string sample)
      : api(api), options_(std::move(options)), page(std::move(page)),
        sample(std::move(sample)) {
    std::string bound = lower(this->options_.host);
    allowedHosts = {"localhost", "127.0.0.1", "[::1]"};
    if (bound != "0.0.0.0" && bound != "::" && !isLoopback(bound))
      allowedHosts.push_back(
          bound.find(':') != std::string::npos ? "[" + bound + "]" : bound);
    for (const std::string &h : this->options_.allowHosts)
      allowedHosts.push_back(lower(h));
    int pool = this->options_.maxConnections;
    new_task_queue = [pool] { return new ConnectionPool(pool); };
    set_payload_max_length(runtime::kMaxEditLineBytes);
    // A kept-alive client (the page's fetch) would otherwise wait for its
    // delayed ACK (40 ms) before a reply's body leaves after its headers.
    set_tcp_nodelay(true);
    auto handler = [this](const httplib::Request &req, httplib::Response &res) {
      dispatch(req, res);
    };
    Get(".*", handler);
    Post(".*", handler);
    Put(".*", handler);
    Patch(".*", handler);
    Delete(".*", handler);
    Options(".*", handler);
    set_error_handler([](const httplib::Request &, httplib::Response &res) {
      if (res.body.empty())
        reply(res, res.status, json{{"error", messageFor(res.status)}});
    });
    set_logger([this](const httplib::Request &req,
                      const httplib::Response &res) { logRequest(req, res); });
  }

  ~Impl() override {
    if (log && log != stderr)
      std::fclose(log);
  }

  /// Opens the access log; false if it cannot be.
  bool openLog() {
    if (options_.accessLog.empty())
      return true;
    log = options_.accessLog == "-"
              ? stderr
              : std::fopen(options_.accessLog.c_str(), "a");
    return log != nullptr;
  }

  std::atomic<bool> stopping{false};
  const FrontOptions &options() const { return options_; }

  /// Debian's cpp-httplib listens with a backlog of 5: a burst of
  /// connections (an attack, or many clients) overflows it and the kernel
  /// drops SYNs, which honest clients then retry after a second. A second
  /// listen() on the bound socket deepens it.
  void deepenBacklog() { ::listen(svr_sock_, SOMAXCONN); }

  /// httplib's stop() does nothing before listen_after_bind() has marked
  /// the server running, so a SIGTERM right after start-up was lost and the
  /// server never stopped. Closing the listening socket ourselves works at
  /// any time: the accept loop ends, or never starts.
  void closeListener() {
    socket_t sock = svr_sock_.exchange(INVALID_SOCKET);
    if (sock == INVALID_SOCKET)
      return;
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
  }

private:
  /// Counts a request the front answered itself (the API counts its own)
  /// and writes its access-log line.
  void logRequest(const httplib::Request &req, const httplib::Response &res) {
    double seconds =
        std::chrono::duration<double>(Clock::now() - requestStart).count();
    if (frontRoute)
      api.metrics().request(frontRoute, res.status, seconds);
    frontRoute = nullptr;
    if (!log)
      return;
    json line{{"time", utcNow()},
              {"remote", req.remote_addr},
              {"method", req.method},
              {"path", req.path.substr(0, 256)},
              {"status", res.status},
              {"request_bytes", req.body.size()},
              {"response_bytes", res.body.size()},
              {"ms", std::round(seconds * 1e6) / 1e3}};
    std::string text =
        line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::lock_guard<std::mutex> lock(logMutex);
    std::fwrite(text.data(), 1, text.size(), log);
    std::fflush(log);
  }

  static void reply(httplib::Response &res, int status, const json &body) {
    res.status = status;
    res.set_content(runtime::dumpJson(body), "application/json");
  }

  /// Host without its port, lower case ("" when absent).
  static std::string hostName(const httplib::Request &req) {
    std::string h = lower(req.get_header_value("Host"));
    if (!h.empty() && h[0] == '[')
      return h.substr(0, h.find(']') + 1);
    return h.substr(0, h.find(':'));
  }

  /// Who may call: the reason a request is refused, or "". `kind` names
  /// it for the metrics.
  std::string refusal(const httplib::Request &req, int &status,
                      std::string &corsOrigin, const char *&kind) const {
    status = 403;
    kind = "origin";
    if (req.has_header("Host")) {
      kind = "host";
      std::string host = hostName(req);
      if (std::find(allowedHosts.begin(), allowedHosts.end(), host) ==
          allowedHosts.end()) {
        status = 421;
        return "this server does not answer for host '" + host.substr(0, 64) +
               "' (allow it with --allow-host)";
      }
    }
    if (req.has_header("Origin")) {
      std::string origin = req.get_header_value("Origin");
      bool same = origin == "http://" + req.get_header_value("Host");
      bool allowed =
          std::find(options_.allowOrigins.begin(), options_.allowOrigins.end(),
                    origin) != options_.allowOrigins.end();
      kind = "origin";
      if (!same && !allowed)
        return "requests from other web origins are refused ('" +
               origin.substr(0, 64) + "'; allow one with --allow-origin)";
      if (!same)
        corsOrigin = origin;
    }
    bool page = req.path == "/" && req.method == "GET";
    if (!options_.token.empty() && !page && req.method != "OPTIONS" &&
        !sameSecret(req.get_header_value("Authorization"),
                    "Bearer " + options_.token)) {
      status = 401;
      kind = "token";
      return "this server needs 'Authorization: Bearer TOKEN' (--token)";
    }
    if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      std::string type = lower(req.get_header_value("Content-Type"));
      if (type.substr(0, type.find(';')) != "application/json") {
        status = 415;
        kind = "content_type";
        return "send the body as Content-Type: application/json";
      }
    }
    return "";
  }

  void dispatch(const httplib::Request &req, httplib::Response &res) {
    if (currentStream)
      currentStream->disarm(); // the request is in; the work has no deadline
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-store");
    int status;
    std::string corsOrigin;
    const char *kind = nullptr;
    if (std::string why = refusal(req, status, corsOrigin, kind);
        !why.empty()) {
      api.metrics().refusal(kind);
      frontRoute = "refused";
      if (status == 401)
        res.set_header("WWW-Authenticate", "Bearer");
      reply(res, status, json{{"error", why}});
    } else {
      if (!corsOrigin.empty()) {
        res.set_header("Access-Control-Allow-Origin", corsOrigin);
        res.set_header("Vary", "Origin");
      }
      answer(req, res);
    }
    if (currentStream) // the answer must be taken in time
      currentStream->arm(options_.writeSeconds);
  }

  void answer(const httplib::Request &req, httplib::Response &res) {
    frontRoute = "page";
    if (req.method == "OPTIONS") { // a CORS preflight from an allowed origin
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE");
      res.set_header("Access-Control-Allow-Headers",
                     "Content-Type, Authorization");
      res.set_header("Access-Control-Max-Age", "600");
      return;
    }
    if (req.path == "/" && req.method == "GET") {
      res.set_header("X-Frame-Options", "DENY");
      res.set_header("Content-Security-Policy", "frame-ancestors 'none'");
      res.set_content(page, "text/html; charset=utf-8");
      return;
    }
    if (req.path == "/v1/sample" && req.method == "GET") {
      reply(res, 200, json{{"text", sample}});
      return;
    }
    frontRoute = nullptr; // the API counts its own
    DeadlineStream *stream = currentStream;
    ApiRequest request{req.method, req.path, req.body,
                       [stream] { return stream && stream->peerGone(); }};
    ApiReply r = api.handle(request);
    if (r.contentType.empty()) {
      reply(res, r.status, r.body);
    } else {
      res.status = r.status;
      res.set_content(r.text, r.contentType.c_str());
    }
  }

  bool process_and_close_socket(socket_t sock) override {
    if (rejectingConnection) {
      api.metrics().refusal("connections");
      static const std::string busy =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
          "application/json\r\nConnection: close\r\nContent-Length: 55\r\n\r\n"
          "{\"error\":\"too many connections (--max-connections)\"}\n\n";
      (void)!::send(sock, busy.data(), busy.size(),
                    MSG_DONTWAIT | MSG_NOSIGNAL);
      ::shutdown(sock, SHUT_RDWR);
      ::close(sock);
      return true;
    }
    DeadlineStream stream(sock);
    currentStream = &stream;
    bool ok = true;
    for (;;) {
      // Idle between requests: wait for the next one, or close.
      stream.arm(options_.keepAliveSeconds);
      bool ready = false;
      while (!stopping && !stream.expired() &&
             !(ready = waitReadable(stream, 0.2))) {
      }
      if (!ready || stopping)
        break;
      stream.arm(options_.readSeconds);
      bool closed = false;
      frontRoute = "other"; // answers httplib gives before any handler
      requestStart = Clock::now();
      ok = process_request(stream, false, closed, [](httplib::Request &req) {
        requestStart = Clock::now();
        req.ranges.clear(); // whole bodies only
      });
      if (!ok || closed || stopping)
        break;
    }
    currentStream = nullptr;
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }

  /// Waits up to `seconds` (within the stream's deadline) for a request.
  static bool waitReadable(const DeadlineStream &stream, double seconds) {
    pollfd p{stream.socket(), POLLIN, 0};
    return ::poll(&p, 1, int(seconds * 1000)) > 0;
  }

  DocumentServer &api;
  FrontOptions options_;
  std::string page, sample;
  std::vector<std::string> allowedHosts;
  FILE *log = nullptr;
  std::mutex logMutex;
};

HttpFront::HttpFront(DocumentServer &api, FrontOptions options,
                     std::string page, std::string sample)
    : impl(std::make_unique<Impl>(api, std::move(options), std::move(page),
                                  std::move(sample))) {}

HttpFront::~HttpFront() = default;

int HttpFront::bind() {
  const FrontOptions &o = impl->options();
  if (!impl->openLog())
    return -1;
  int port = o.port == 0 ? impl->bind_to_any_port(o.host.c_str())
             : impl->bind_to_port(o.host.c_str(), o.port) ? o.port
                                                          : -1;
  if (port > 0)
    impl->deepenBacklog();
  return port;
}

namespace {
sigset_t stopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
} // namespace

void HttpFront::blockStopSignals() {
  sigset_t set = stopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void HttpFront::run() {
  // Threads started after blockStopSignals() inherit a mask without
  // SIGTERM/SIGINT: one thread waits for them and stops the server.
  blockStopSignals();
  sigset_t set = stopSignals();
  std::signal(SIGPIPE, SIG_IGN);
  std::atomic<bool> done{false};
  std::thread signals([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (done)
      return;
    std::fprintf(stderr, "incnn-serve: %s: finishing the requests in flight\n",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    stop();
  });
  impl->listen_after_bind();
  done = true;
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
}

void HttpFront::stop() {
  impl->stopping = true;
  impl->closeListener();
}

} // namespace incnn::serve
