// parallel_over_batch: the one threading rule of the C++ helpers.
//
// fn(b) runs for every b in [0, batch) on up to num_threads std::threads (the calling thread is one of them).
// Each b is handled entirely by one thread, so results never depend on the thread count. If a thread cannot be
// started, the remaining ones pick up its work.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <system_error>
#include <thread>
#include <vector>

namespace copynce {

template <typename F>
void parallel_over_batch(int64_t batch, int num_threads, const F& fn) {
  const int64_t n = std::min<int64_t>(std::max(num_threads, 1), batch);
  if (n <= 1) {
    for (int64_t b = 0; b < batch; ++b) fn(b);
    return;
  }
  std::atomic<int64_t> next{0};
  auto worker = [&]() {
    for (int64_t b = next.fetch_add(1); b < batch; b = next.fetch_add(1)) fn(b);
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(n - 1));
  for (int64_t t = 1; t < n; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error&) {
      break;
    }
  }
  worker();
  for (auto& th : pool) th.join();
}

}  // namespace copynce
