// See loop-watcher.h.
#include "loop-watcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <system_error>

namespace vun {
namespace {

// The interrupt. SIGURG's default action is to ignore it, so a stray one
// (before the handler is installed, or aimed at a process that never used
// this) is harmless. The handler does nothing: its only purpose is to make
// the blocked syscall return EINTR.
void OnWake(int) {}

void InstallWakeHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the blocked call must return EINTR
    sa.sa_handler = OnWake;
    sigaction(SIGURG, &sa, nullptr);
  });
}

// The loop's clock: uv_now() counts milliseconds of uv_hrtime().
int64_t NowMs() { return static_cast<int64_t>(uv_hrtime() / 1000000); }

}  // namespace

LoopWatcher::LoopWatcher(uv_loop_t* loop)
    : loop_(loop), target_(pthread_self()), backend_fd_(uv_backend_fd(loop)) {
  InstallWakeHandler();
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  // Signals for the process must not land on the helper: block them all in it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    ::close(wake_fd_);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

LoopWatcher::~LoopWatcher() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(wake_fd_);
}

int64_t LoopWatcher::LoopDeadline() {
  int t = uv_backend_timeout(loop_);
  if (t == 0) return -2;
  if (t < 0) return -1;
  return static_cast<int64_t>(uv_now(loop_)) + t;
}

void LoopWatcher::Arm() {
  int64_t dl = LoopDeadline();
  {
    std::lock_guard<std::mutex> lk(mu_);
    armed_ = true;
    gen_++;
    deadline_ = dl == -2 ? NowMs() : dl;
    due_.store(dl == -2);
  }
  cv_.notify_all();
  // The helper may sit in poll() from an earlier arming: make it start over.
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

bool LoopWatcher::Refresh() {
  int64_t dl = LoopDeadline();
  if (dl == -2) return false;
  if (dl < 0) return true;
  std::lock_guard<std::mutex> lk(mu_);
  if (deadline_ >= 0 && deadline_ <= dl) return true;
  deadline_ = dl;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  return true;
}

void LoopWatcher::Disarm() {
  std::lock_guard<std::mutex> lk(mu_);
  armed_ = false;
  gen_++;
}

void LoopWatcher::Run() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return stop_ || (armed_ && !due_.load()); });
    if (stop_) return;
    uint64_t gen = gen_;
    int64_t dl = deadline_;
    lk.unlock();
    int timeout = -1;
    if (dl >= 0) {
      int64_t left = dl - NowMs();
      timeout = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : static_cast<int>(left);
    }
    pollfd p[2] = {{backend_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int r = ::poll(p, 2, timeout);
    if (r > 0 && (p[1].revents & POLLIN)) {
      uint64_t v;
      (void)!::read(wake_fd_, &v, sizeof v);
    }
    lk.lock();
    if (stop_) return;
    if (!armed_ || gen_ != gen) continue;  // disarmed or re-armed meanwhile
    bool ready = r > 0 && (p[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
    bool timedOut = deadline_ >= 0 && NowMs() >= deadline_;
    if (!ready && !timedOut) continue;  // woken for a sooner deadline: poll again
    due_.store(true);
    // Interrupt until the target has left its blocking call: it may have been
    // between its due() check and the syscall when the first signal came.
    while (!stop_ && armed_ && gen_ == gen && blocked_.load()) {
      pthread_kill(target_, SIGURG);
      cv_.wait_for(lk, std::chrono::milliseconds(1));
    }
  }
}

}  // namespace vun
