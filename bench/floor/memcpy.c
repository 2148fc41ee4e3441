// The DMA floor: memcpy between a private buffer and a MAP_SHARED mapping of
// the guest-memory fd given as fd 3 (the same memfd our device maps), in
// chunks, PASSES times over the whole mapping each way.
// Prints {"bytes":B,"readNs":T,"writeNs":T}: read = mapping -> buffer.
//
//   memcpy CHUNK PASSES     (fd 3: the memfd)
#include <sys/mman.h>
#include <sys/stat.h>

#include "common.h"

static volatile uint8_t sink;

int main(int argc, char **argv) {
  size_t chunk = argc > 1 ? strtoull(argv[1], NULL, 0) : (1u << 20);
  int passes = argc > 2 ? atoi(argv[2]) : 3;
  struct stat st;
  if (fstat(3, &st) < 0) die("fstat fd 3");
  size_t size = (size_t)st.st_size / chunk * chunk;
  uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
  if (map == MAP_FAILED) die("mmap");
  uint8_t *buf = aligned_alloc(4096, chunk);
  if (!buf) die("alloc");
  memset(buf, 0x5a, chunk);
  /* Warm-up pass: fault every page in, as the device's mapping already is. */
  for (size_t off = 0; off < size; off += chunk) memcpy(map + off, buf, chunk);
  uint64_t rns = 0, wns = 0;
  for (int p = 0; p < passes; p++) {
    uint64_t t0 = now_ns();
    for (size_t off = 0; off < size; off += chunk) {
      memcpy(buf, map + off, chunk);
      sink = buf[off % chunk];
    }
    uint64_t t1 = now_ns();
    for (size_t off = 0; off < size; off += chunk) memcpy(map + off, buf, chunk);
    uint64_t t2 = now_ns();
    rns += t1 - t0;
    wns += t2 - t1;
  }
  printf("{\"bytes\":%llu,\"readNs\":%llu,\"writeNs\":%llu}\n", (unsigned long long)(size * (size_t)passes),
         (unsigned long long)rns, (unsigned long long)wns);
  return 0;
}
