//===- ThreadPool.h - A small fork-join thread pool -------------*- C++ -*-===//
//
// `parallelFor` hands out task indices dynamically. Kernels are written so
// that a task's result never depends on which thread runs it, so dynamic
// scheduling keeps results bit-reproducible.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_THREADPOOL_H
#define INCNN_RUNTIME_THREADPOOL_H

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace incnn::runtime {

class ThreadPool {
public:
  /// A pool running work on `numThreads` threads in total, the calling
  /// thread included; 0 means std::thread::hardware_concurrency(). Throws
  /// std::system_error ("cannot start N worker threads: ...") when a thread
  /// cannot be created, after joining those already started.
  explicit ThreadPool(int numThreads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int numThreads() const { return int(workers.size()) + 1; }

  /// Runs fn(i) for every i in [0, n) and returns when all are done. Calls
  /// from inside a task, or concurrent calls, run serially on the caller.
  void parallelFor(int64_t n, const std::function<void(int64_t)> &fn);

private:
  /// Stops and joins every worker.
  void stop();
  void workerLoop();
  /// Claims and runs tasks of generation `gen` until none are left.
  void runTasks(uint64_t gen, const std::function<void(int64_t)> *fn,
                int64_t size);

  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable wake, done;
  bool stopping = false;
  std::atomic<bool> busy{false};
  // The current job, published under `mutex`.
  uint64_t generation = 0;
  const std::function<void(int64_t)> *job = nullptr;
  int64_t jobSize = 0;
  /// (generation << 32) | next task index; claimed by compare-exchange so
  /// a worker that wakes late can never take a task of a newer job.
  std::atomic<uint64_t> ticket{0};
  std::atomic<int64_t> completed{0};
};

/// Runs fn(i) for i in [0, n) on `pool`, or serially when `pool` is null.
inline void parallelFor(ThreadPool *pool, int64_t n,
                        const std::function<void(int64_t)> &fn) {
  if (pool)
    pool->parallelFor(n, fn);
  else
    for (int64_t i = 0; i < n; ++i)
      fn(i);
}

/// f(i) for every i in [0, n), in tasks of `rowsPerTask` consecutive i.
template <typename F>
void forRowChunks(int64_t n, int64_t rowsPerTask, ThreadPool *pool, F f) {
  int64_t tasks = (n + rowsPerTask - 1) / rowsPerTask;
  parallelFor(pool, tasks, [&](int64_t t) {
    int64_t begin = t * rowsPerTask, end = std::min(n, begin + rowsPerTask);
    for (int64_t i = begin; i < end; ++i)
      f(i);
  });
}

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_THREADPOOL_H
