//===- ThreadPool.cpp - A small fork-join thread pool ---------------------===//

#include "ThreadPool.h"

namespace incnn::runtime {

static thread_local bool insideTask = false;

ThreadPool::ThreadPool(int numThreads) {
  if (numThreads <= 0)
    numThreads = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < numThreads; ++i)
    workers.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (std::thread &t : workers)
    t.join();
}

void ThreadPool::runTasks() {
  insideTask = true;
  for (;;) {
    int64_t i = nextTask.fetch_add(1, std::memory_order_relaxed);
    if (i >= jobSize)
      break;
    (*job)(i);
  }
  insideTask = false;
}

void ThreadPool::workerLoop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [&] { return stopping || generation != seen; });
      if (stopping)
        return;
      seen = generation;
    }
    runTasks();
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (--activeWorkers == 0)
        done.notify_one();
    }
  }
}

void ThreadPool::parallelFor(int64_t n,
                             const std::function<void(int64_t)> &fn) {
  if (n <= 0)
    return;
  bool expected = false;
  if (n == 1 || workers.empty() || insideTask ||
      !busy.compare_exchange_strong(expected, true)) {
    for (int64_t i = 0; i < n; ++i)
      fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    job = &fn;
    jobSize = n;
    nextTask.store(0, std::memory_order_relaxed);
    activeWorkers = int(workers.size());
    ++generation;
  }
  wake.notify_all();
  runTasks();
  {
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return activeWorkers == 0; });
    job = nullptr;
  }
  busy.store(false);
}

} // namespace incnn::runtime
