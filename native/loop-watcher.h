// LoopWatcher: lets a thread block in a socket call (recvmsg) while its libuv
// loop still gets serviced on time.
//
// The thread that blocks ("the target") arms the watcher with the due time of
// its loop's next timer. A helper thread then waits in poll() on the loop's
// backend fd (the epoll fd: readable when any watched fd, async handle or
// signal pipe of that loop is ready) and on its own wake eventfd, with that
// timeout. When the loop has work, the helper sets due() and interrupts the
// target's blocked syscall with SIGURG (installed without SA_RESTART, so the
// call returns EINTR); the target then goes back to its loop.
//
// The hot path costs no syscall: the target only toggles two atomics around
// each blocking call and reads due(). The race between the target checking
// due() and entering the syscall is closed by re-sending the signal every
// millisecond while the target still says it is blocked.
#pragma once

#include <pthread.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace vun {

class LoopWatcher {
 public:
  // For the calling thread and its loop. Throws std::system_error when the
  // helper thread or its eventfd cannot be made.
  explicit LoopWatcher(uv_loop_t* loop);
  ~LoopWatcher();
  LoopWatcher(const LoopWatcher&) = delete;
  LoopWatcher& operator=(const LoopWatcher&) = delete;

  // Starts watching with the loop's current timeout (target thread only).
  void Arm();
  // After the target ran JS: picks up a sooner timer (one eventfd write, only
  // when the due time moved earlier). Returns false when the loop has work
  // due now (timeout 0: immediates, pending callbacks, closing handles).
  bool Refresh();
  // Stops watching (the target goes back to its loop).
  void Disarm();

  bool due() const { return due_.load(std::memory_order_seq_cst); }
  void EnterBlocked() { blocked_.store(true, std::memory_order_seq_cst); }
  void LeaveBlocked() { blocked_.store(false, std::memory_order_seq_cst); }

 private:
  void Run();
  // Absolute due time (loop clock, ms) of the loop's next timer, -1 for none, -2 for now.
  int64_t LoopDeadline();

  uv_loop_t* loop_;
  pthread_t target_;
  int backend_fd_;
  int wake_fd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool stop_ = false;
  uint64_t gen_ = 0;
  int64_t deadline_ = -1;
  std::atomic<bool> due_{false};
  std::atomic<bool> blocked_{false};
  std::thread thread_;
};

}  // namespace vun
