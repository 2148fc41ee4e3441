// The interrupt floor: N eventfd writes of 1 from a tight C loop while a
// second process (the "client") waits in poll() on the eventfd and reads the
// counter, as our client's eventfd watcher does. The reader's total is
// checked. Prints {"ops":N,"ns":T}.
//
//   eventfd-writer N
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

#include "common.h"

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000;
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) die("eventfd");
  uint64_t one = 1, v;
  uint64_t warm = n / 10;
  int pipefd[2];
  if (pipe(pipefd) < 0) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    /* The client: poll + read until it has seen warm + n signals. */
    uint64_t seen = 0;
    while (seen < warm + n) {
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) die("poll");
      if (read(fd, &v, 8) == 8) seen += v;
    }
    if (write(pipefd[1], &seen, 8) != 8) die("write pipe");
    _exit(0);
  }
  for (uint64_t i = 0; i < warm; i++)
    if (write(fd, &one, 8) != 8) die("write");
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++)
    if (write(fd, &one, 8) != 8) die("write");
  uint64_t ns = now_ns() - t0;
  if (read(pipefd[0], &v, 8) != 8) die("read pipe");
  waitpid(pid, NULL, 0);
  v -= warm;
  if (v != n) {
    fprintf(stderr, "counter %llu, expected %llu\n", (unsigned long long)v, (unsigned long long)n);
    return 1;
  }
  printf("{\"ops\":%llu,\"ns\":%llu}\n", (unsigned long long)n, (unsigned long long)ns);
  return 0;
}
