//===- ThreadPool.cpp - A small fork-join thread pool ---------------------===//
//
// The caller of parallelFor runs tasks too and waits only for tasks that
// were claimed, never for idle workers to wake up: on an oversubscribed
// machine a descheduled worker does not delay the caller.
//
//===----------------------------------------------------------------------===//

#include "ThreadPool.h"

#include <limits>
#include <string>
#include <system_error>

namespace incnn::runtime {

static thread_local bool insideTask = false;

ThreadPool::ThreadPool(int numThreads) {
  if (numThreads <= 0)
    numThreads = int(std::max(1u, std::thread::hardware_concurrency()));
  try {
    workers.reserve(size_t(numThreads - 1));
    for (int i = 1; i < numThreads; ++i)
      workers.emplace_back([this] { workerLoop(); });
  } catch (const std::system_error &e) {
    // No destructor runs after a throwing constructor: the workers started
    // so far must stop before their condition variable is destroyed.
    stop();
    throw std::system_error(e.code(), "cannot start " +
                                          std::to_string(numThreads - 1) +
                                          " worker threads");
  } catch (...) {
    stop();
    throw;
  }
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (std::thread &t : workers)
    t.join();
}

void ThreadPool::runTasks(uint64_t gen, const std::function<void(int64_t)> *fn,
                          int64_t size) {
  insideTask = true;
  uint64_t t = ticket.load(std::memory_order_acquire);
  for (;;) {
    if ((t >> 32) != (gen & 0xffffffffu) || int64_t(t & 0xffffffffu) >= size)
      break;
    if (!ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel))
      continue;
    (*fn)(int64_t(t & 0xffffffffu));
    if (completed.fetch_add(1, std::memory_order_acq_rel) + 1 == size) {
      std::lock_guard<std::mutex> lock(mutex);
      done.notify_all();
    }
    t = ticket.load(std::memory_order_acquire);
  }
  insideTask = false;
}

void ThreadPool::workerLoop() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen;
    const std::function<void(int64_t)> *fn;
    int64_t size;
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [&] { return stopping || generation != seen; });
      if (stopping)
        return;
      seen = gen = generation;
      fn = job;
      size = jobSize;
    }
    runTasks(gen, fn, size);
  }
}

void ThreadPool::parallelFor(int64_t n,
                             const std::function<void(int64_t)> &fn) {
  if (n <= 0)
    return;
  bool expected = false;
  if (n == 1 || workers.empty() || insideTask ||
      n > int64_t(std::numeric_limits<uint32_t>::max()) ||
      !busy.compare_exchange_strong(expected, true)) {
    for (int64_t i = 0; i < n; ++i)
      fn(i);
    return;
  }
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(mutex);
    gen = ++generation;
    job = &fn;
    jobSize = n;
    completed.store(0, std::memory_order_relaxed);
    ticket.store((gen & 0xffffffffu) << 32, std::memory_order_release);
  }
  wake.notify_all();
  runTasks(gen, &fn, n);
  if (completed.load(std::memory_order_acquire) != n) {
    // Brief spin for tasks still running elsewhere, then block.
    for (int i = 0; i < 2000 && completed.load(std::memory_order_acquire) != n;
         ++i)
      std::this_thread::yield();
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock,
              [&] { return completed.load(std::memory_order_acquire) == n; });
  }
  busy.store(false);
}

} // namespace incnn::runtime
