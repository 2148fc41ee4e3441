// Shared bits of the C floor programs: the 16-byte vfio-user header, exact
// reads and writes, and a monotonic clock. Nothing here allocates per message.
#pragma once
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct vhdr {
  uint16_t id;
  uint16_t cmd;
  uint32_t size;
  uint32_t flags;
  uint32_t error;
};
_Static_assert(sizeof(struct vhdr) == 16, "header is 16 bytes");

enum {
  CMD_VERSION = 1,
  CMD_REGION_READ = 9,
  CMD_REGION_WRITE = 10,
  CMD_WRITE_MULTI = 15,
  CMD_MIG_DATA_READ = 17,
  CMD_MIG_DATA_WRITE = 18,
  FLAG_REPLY = 1,
  FLAG_NO_REPLY = 0x10,
  FLAG_ERROR = 0x20,
};

static inline void die(const char *what) {
  perror(what);
  exit(1);
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void send_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("send");
    }
    p += n;
    len -= (size_t)n;
  }
}

/* Reads exactly len bytes; returns 0 on EOF before any byte, 1 when done. */
static inline int recv_all(int fd, void *buf, size_t len) {
  uint8_t *p = buf;
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(fd, p + got, len - got, MSG_WAITALL);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("recv");
    }
    if (n == 0) {
      if (got == 0) return 0;
      fprintf(stderr, "unexpected EOF\n");
      exit(1);
    }
    got += (size_t)n;
  }
  return 1;
}

static inline void make_addr(const char *path, struct sockaddr_un *a) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a->sun_path) {
    fprintf(stderr, "path too long\n");
    exit(1);
  }
  strcpy(a->sun_path, path);
}
