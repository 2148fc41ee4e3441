// The floor: a minimal blocking vfio-user-shaped server over a UNIX socket.
// One recv per request (into a buffer that holds whole messages) and one send
// per reply: the 2 syscalls a request needs. It parses the 16-byte header and
// answers with the same byte counts as our server:
//   VERSION        -> version reply with a short capabilities JSON
//   REGION_READ    -> 16-byte access header echoed + count bytes of a buffer
//   REGION_WRITE   -> data copied into the buffer; 16-byte echo
//   WRITE_MULTI    -> entries applied; u64 wr_cnt (NO_REPLY: nothing)
//   MIG_DATA_READ  -> argsz, size, next bytes of the state (padded to size)
//   MIG_DATA_WRITE -> data copied into the state; header-only reply
//   anything else  -> header-only success reply
// NO_REPLY commands get no reply. Serves one client after another.
//
//   floor-server PATH [MIG_STATE_BYTES]   (prints "listening" once bound)
#include "common.h"

#define REGION_SIZE (1u << 20)
#define BUF_CAP ((2u << 20) + 4096)

static uint8_t *region;
static uint8_t *rbuf, *wbuf;
static uint8_t *mig;
static size_t mig_size, mig_pos;

static void reply(int c, const struct vhdr *h, size_t payload) {
  if (h->flags & FLAG_NO_REPLY) return;
  struct vhdr r = {h->id, h->cmd, (uint32_t)(16 + payload), FLAG_REPLY, 0};
  memcpy(wbuf, &r, 16);
  send_all(c, wbuf, 16 + payload);
}

static void handle(int c, const struct vhdr *h, const uint8_t *p, size_t len) {
  uint8_t *out = wbuf + 16;
  switch (h->cmd) {
    case CMD_VERSION: {
      static const char caps[] = "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576}}";
      uint16_t v[2] = {0, 2};
      memcpy(out, v, 4);
      memcpy(out + 4, caps, sizeof caps);
      reply(c, h, 4 + sizeof caps);
      return;
    }
    case CMD_REGION_READ: {
      uint64_t off;
      uint32_t count;
      if (len < 16) break;
      memcpy(&off, p, 8);
      memcpy(&count, p + 12, 4);
      if (count > REGION_SIZE) count = REGION_SIZE;
      off &= (REGION_SIZE - 1);
      if (off + count > REGION_SIZE) off = 0;
      memcpy(out, p, 16);
      memcpy(out + 12, &count, 4);
      memcpy(out + 16, region + off, count);
      reply(c, h, 16 + count);
      return;
    }
    case CMD_REGION_WRITE: {
      uint64_t off;
      uint32_t count;
      if (len < 16) break;
      memcpy(&off, p, 8);
      memcpy(&count, p + 12, 4);
      if (count > len - 16) count = (uint32_t)(len - 16);
      off &= (REGION_SIZE - 1);
      if (off + count > REGION_SIZE) off = 0;
      memcpy(region + off, p + 16, count);
      memcpy(out, p, 16);
      reply(c, h, 16);
      return;
    }
    case CMD_WRITE_MULTI: {
      uint64_t n;
      if (len < 8) break;
      memcpy(&n, p, 8);
      if (n > (len - 8) / 24) n = (len - 8) / 24;
      for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = p + 8 + 24 * i;
        uint64_t off;
        uint32_t count;
        memcpy(&off, e, 8);
        memcpy(&count, e + 12, 4);
        if (count > 8) count = 8;
        off &= (REGION_SIZE - 1);
        if (off + count > REGION_SIZE) off = 0;
        memcpy(region + off, e + 16, count);
      }
      memcpy(out, &n, 8);
      reply(c, h, 8);
      return;
    }
    case CMD_MIG_DATA_READ: {
      uint32_t size;
      if (len < 8) break;
      memcpy(&size, p + 4, 4);
      if (size > (1u << 20)) size = 1u << 20;
      size_t n = mig_size - mig_pos < size ? mig_size - mig_pos : size;
      uint32_t hdr[2] = {(uint32_t)(8 + n), (uint32_t)n};
      memcpy(out, hdr, 8);
      memcpy(out + 8, mig + mig_pos, n);
      if (n < size) memset(out + 8 + n, 0, size - n);
      mig_pos += n;
      reply(c, h, 8 + size);
      return;
    }
    case CMD_MIG_DATA_WRITE: {
      if (len < 8) break;
      size_t n = len - 8;
      if (mig_pos + n > mig_size) mig_pos = 0;
      if (n <= mig_size) memcpy(mig + mig_pos, p + 8, n);
      mig_pos += n;
      reply(c, h, 0);
      return;
    }
    default:
      break;
  }
  reply(c, h, 0);
}

static void serve(int c) {
  size_t have = 0;
  mig_pos = 0;
  for (;;) {
    ssize_t n = recv(c, rbuf + have, BUF_CAP - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    have += (size_t)n;
    size_t pos = 0;
    while (have - pos >= 16) {
      struct vhdr h;
      memcpy(&h, rbuf + pos, 16);
      if (h.size < 16 || h.size > BUF_CAP) return;
      if (have - pos < h.size) break;
      handle(c, &h, rbuf + pos + 16, h.size - 16);
      pos += h.size;
    }
    if (pos > 0 && have > pos) memmove(rbuf, rbuf + pos, have - pos);
    have -= pos;
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: floor-server PATH [MIG_STATE_BYTES]\n");
    return 2;
  }
  mig_size = argc > 2 ? strtoull(argv[2], NULL, 0) : 0;
  region = calloc(1, REGION_SIZE);
  rbuf = malloc(BUF_CAP);
  wbuf = malloc(BUF_CAP + 64);
  mig = mig_size ? malloc(mig_size) : NULL;
  if (!region || !rbuf || !wbuf || (mig_size && !mig)) die("malloc");
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  struct sockaddr_un a;
  make_addr(argv[1], &a);
  unlink(argv[1]);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(s, 4) < 0) die("listen");
  printf("listening\n");
  fflush(stdout);
  /* The state is filled after listening (connections wait in the backlog). */
  for (size_t i = 0; i < mig_size; i++) mig[i] = (uint8_t)(i * 7);
  for (;;) {
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    serve(c);
    close(c);
  }
}
