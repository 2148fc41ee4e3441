// Byte-exact test vectors.

/**
 * The VERSION request payload QEMU 11.1.3 sends (verified live): major 0,
 * minor 0, then this JSON (spaces and key order exactly so) and a NUL:
 * {"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "max_data_xfer_size": 1048576, "migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "write_multiple": true}}
 * 198 bytes.
 */
export const QEMU_11_1_3_VERSION_REQUEST_HEX =
  '0000' + '0000' +
  '7b226361706162696c6974696573223a207b22706773697a6573223a20343039' +
  '362c20226d61785f6d73675f666473223a2031362c20226d61785f646d615f6d' +
  '617073223a2036353533352c20226d61785f646174615f786665725f73697a65' +
  '223a20313034383537362c20226d6967726174696f6e223a207b226d61785f62' +
  '69746d61705f73697a65223a203236383433353435362c2022706773697a6522' +
  '3a20343039367d2c202277726974655f6d756c7469706c65223a20747275657d' +
  '7d' +
  '00';

export const QEMU_11_1_3_VERSION_JSON =
  '{"capabilities": {"pgsizes": 4096, "max_msg_fds": 16, "max_dma_maps": 65535, "max_data_xfer_size": 1048576, ' +
  '"migration": {"max_bitmap_size": 268435456, "pgsize": 4096}, "write_multiple": true}}';

/** libvfio-user samples/client.c VERSION: 0.2 + compact JSON + NUL. */
export const LVU_CLIENT_VERSION_JSON = '{"capabilities":{"max_msg_fds":32,"max_data_xfer_size":1024}}';
