// A test server with the two quirks of libvfio-user's sample server that our
// client must live with: it never advertises write_multiple, and its BAR1
// read callback ignores the offset (returns the region's first bytes; writes
// honour it). Otherwise it is our timer sample, so the client's checks and
// its migration into `vfio-user server` behave as against the real thing.
import { createTimerDevice, type TimerDevice, type TimerDeviceOptions } from '../../samples/timer-device.js';

export function createLvuQuirksServer(opts: TimerDeviceOptions = {}): TimerDevice {
  const dev = createTimerDevice({ ...opts, writeMultiple: false });
  const bar1 = dev.ctx.region(1);
  const mem = bar1.memory!;
  // An overlay over all of BAR1 takes REGION_READ/WRITE before the shared memory does.
  bar1.overlays.push({
    offset: 0,
    size: bar1.size,
    read: (_offset, count) => mem.slice(0, count),
    write: (offset, data) => void mem.set(data, offset),
  });
  return dev;
}
