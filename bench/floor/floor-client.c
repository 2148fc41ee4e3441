// The floor client: blocking, one send and one recv per round trip. Drives the
// C floor server or our server (it negotiates VERSION first, as ours requires).
// Prints one JSON line: {"ops":N,"ns":T[,"bytes":B]}.
//
//   floor-client read   PATH OPS COUNT REGION    REGION_READ round trips of COUNT bytes
//   floor-client write  PATH OPS COUNT REGION    REGION_WRITE round trips of COUNT bytes
//   floor-client posted PATH OPS COUNT REGION    NO_REPLY REGION_WRITEs, then one read to sync
//   floor-client multi  PATH OPS ENTRIES REGION  NO_REPLY REGION_WRITE_MULTI of ENTRIES 4-byte writes
//                                                (OPS writes in all), then one read to sync
//   floor-client mig    SRC DST BYTES CHUNK      MIG_DATA_READ from SRC -> MIG_DATA_WRITE to DST
#include <sys/uio.h>

#include "common.h"

static uint8_t *buf;
#define BUF_CAP ((2u << 20) + 4096)
static uint16_t next_id = 1;

static int connect_to(const char *path) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  struct sockaddr_un a;
  make_addr(path, &a);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  return s;
}

/* Reads one whole message into buf; returns its header. */
static struct vhdr read_msg(int fd) {
  struct vhdr h;
  if (!recv_all(fd, &h, 16)) {
    fprintf(stderr, "server closed\n");
    exit(1);
  }
  if (h.size < 16 || h.size - 16 > BUF_CAP) {
    fprintf(stderr, "bad msg_size %u\n", h.size);
    exit(1);
  }
  if (h.size > 16) recv_all(fd, buf, h.size - 16);
  if (h.flags & FLAG_ERROR) {
    fprintf(stderr, "error reply to command %u: errno %u\n", h.cmd, h.error);
    exit(1);
  }
  return h;
}

static void negotiate(int fd) {
  static const char caps[] =
      "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,\"write_multiple\":true}}";
  uint8_t msg[16 + 4 + sizeof caps];
  struct vhdr h = {next_id++, CMD_VERSION, sizeof msg, 0, 0};
  uint16_t v[2] = {0, 2};
  memcpy(msg, &h, 16);
  memcpy(msg + 16, v, 4);
  memcpy(msg + 20, caps, sizeof caps);
  send_all(fd, msg, sizeof msg);
  read_msg(fd);
}

/* One request already built in req (msg_size set); waits for a reply of reply_len bytes. */
static void round_trip(int fd, uint8_t *req, size_t reply_len) {
  struct vhdr *h = (struct vhdr *)req;
  h->id = next_id++;
  send_all(fd, req, h->size);
  /* Our server and the floor both send a reply in one piece: one recv. */
  if (!recv_all(fd, buf, reply_len)) {
    fprintf(stderr, "server closed\n");
    exit(1);
  }
  struct vhdr r;
  memcpy(&r, buf, 16);
  if ((r.flags & FLAG_ERROR) || r.size != reply_len) {
    fprintf(stderr, "bad reply: cmd %u size %u (want %zu) flags %#x errno %u\n", r.cmd, r.size, reply_len, r.flags,
            r.error);
    exit(1);
  }
}

static size_t build_access(uint8_t *m, int cmd, uint32_t region, uint32_t count, uint32_t flags) {
  size_t size = 32 + (cmd == CMD_REGION_WRITE ? count : 0);
  struct vhdr h = {0, (uint16_t)cmd, (uint32_t)size, flags, 0};
  uint64_t off = 0;
  memcpy(m, &h, 16);
  memcpy(m + 16, &off, 8);
  memcpy(m + 24, &region, 4);
  memcpy(m + 28, &count, 4);
  for (uint32_t i = 0; i < count && cmd == CMD_REGION_WRITE; i++) m[32 + i] = (uint8_t)(i + 1);
  return size;
}

static void print_result(uint64_t ops, uint64_t ns, uint64_t bytes) {
  printf("{\"ops\":%llu,\"ns\":%llu,\"bytes\":%llu}\n", (unsigned long long)ops, (unsigned long long)ns,
         (unsigned long long)bytes);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: floor-client MODE PATH OPS COUNT REGION | mig SRC DST BYTES CHUNK\n");
    return 2;
  }
  buf = malloc(BUF_CAP);
  if (!buf) die("malloc");
  const char *mode = argv[1];

  if (strcmp(mode, "mig") == 0) {
    uint64_t total = strtoull(argv[4], NULL, 0);
    uint32_t chunk = (uint32_t)strtoul(argv[5], NULL, 0);
    int a = connect_to(argv[2]), b = connect_to(argv[3]);
    negotiate(a);
    negotiate(b);
    uint64_t moved = 0, msgs = 0;
    uint64_t t0 = now_ns();
    while (moved < total) {
      uint8_t rq[24];
      struct vhdr h = {next_id++, CMD_MIG_DATA_READ, 24, 0, 0};
      uint32_t args[2] = {8 + chunk, chunk};
      memcpy(rq, &h, 16);
      memcpy(rq + 16, args, 8);
      send_all(a, rq, 24);
      read_msg(a);
      uint32_t n;
      memcpy(&n, buf + 4, 4);
      if (n == 0) break;
      uint32_t argsz = 8 + n;
      memcpy(buf, &argsz, 4);
      struct vhdr w = {next_id++, CMD_MIG_DATA_WRITE, 16 + 8 + n, 0, 0};
      struct iovec iov[2] = {{&w, 16}, {buf, 8 + n}};
      struct msghdr mh = {0};
      mh.msg_iov = iov;
      mh.msg_iovlen = 2;
      size_t left = 24 + n;
      while (left > 0) {
        ssize_t s = sendmsg(b, &mh, MSG_NOSIGNAL);
        if (s < 0) {
          if (errno == EINTR) continue;
          die("sendmsg");
        }
        left -= (size_t)s;
        while (s > 0 && mh.msg_iovlen > 0) {
          if ((size_t)s >= mh.msg_iov[0].iov_len) {
            s -= (ssize_t)mh.msg_iov[0].iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
          } else {
            mh.msg_iov[0].iov_base = (uint8_t *)mh.msg_iov[0].iov_base + s;
            mh.msg_iov[0].iov_len -= (size_t)s;
            s = 0;
          }
        }
      }
      read_msg(b);
      moved += n;
      msgs++;
    }
    print_result(msgs, now_ns() - t0, moved);
    return 0;
  }

  const char *path = argv[2];
  uint64_t ops = strtoull(argv[3], NULL, 0);
  uint32_t count = (uint32_t)strtoul(argv[4], NULL, 0);
  uint32_t region = (uint32_t)strtoul(argv[5], NULL, 0);
  int fd = connect_to(path);
  negotiate(fd);
  static uint8_t req[(1u << 20) + 64];
  static uint8_t sync_req[32];
  build_access(sync_req, CMD_REGION_READ, region, 4, 0);

  if (strcmp(mode, "read") == 0 || strcmp(mode, "write") == 0) {
    int cmd = mode[0] == 'r' ? CMD_REGION_READ : CMD_REGION_WRITE;
    build_access(req, cmd, region, count, 0);
    size_t reply_len = 32 + (cmd == CMD_REGION_READ ? count : 0);
    uint64_t warm = ops / 10 < 20000 ? ops / 10 : 20000;
    for (uint64_t i = 0; i < warm; i++) round_trip(fd, req, reply_len);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) round_trip(fd, req, reply_len);
    print_result(ops, now_ns() - t0, ops * count);
  } else if (strcmp(mode, "posted") == 0) {
    size_t size = build_access(req, CMD_REGION_WRITE, region, count, FLAG_NO_REPLY);
    uint64_t warm = ops / 10;
    for (int pass = 0; pass < 2; pass++) {
      uint64_t n = pass == 0 ? warm : ops;
      uint64_t t0 = now_ns();
      for (uint64_t i = 0; i < n; i++) {
        ((struct vhdr *)req)->id = next_id++;
        send_all(fd, req, size);
      }
      round_trip(fd, sync_req, 36);
      if (pass == 1) print_result(ops, now_ns() - t0, ops * count);
    }
  } else if (strcmp(mode, "multi") == 0) {
    uint32_t entries = count;
    if (entries == 0 || entries > 200) entries = 200;
    size_t size = 16 + 8 + 24 * (size_t)entries;
    struct vhdr h = {0, CMD_WRITE_MULTI, (uint32_t)size, FLAG_NO_REPLY, 0};
    memcpy(req, &h, 16);
    uint64_t n64 = entries;
    memcpy(req + 16, &n64, 8);
    for (uint32_t i = 0; i < entries; i++) {
      uint8_t *e = req + 24 + 24 * i;
      uint64_t off = (uint64_t)(i % 64) * 4;
      uint32_t c4 = 4;
      memset(e, 0, 24);
      memcpy(e, &off, 8);
      memcpy(e + 8, &region, 4);
      memcpy(e + 12, &c4, 4);
      memcpy(e + 16, &i, 4);
    }
    uint64_t msgs = (ops + entries - 1) / entries;
    for (int pass = 0; pass < 2; pass++) {
      uint64_t n = pass == 0 ? msgs / 10 : msgs;
      uint64_t t0 = now_ns();
      for (uint64_t i = 0; i < n; i++) {
        ((struct vhdr *)req)->id = next_id++;
        send_all(fd, req, size);
      }
      round_trip(fd, sync_req, 36);
      if (pass == 1) print_result(msgs * entries, now_ns() - t0, msgs * entries * 4);
    }
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  close(fd);
  return 0;
}
