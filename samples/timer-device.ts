// The timer-interrupt sample device, laid out like libvfio-user's
// samples/server.c (with its BAR1 of 0x4000, upstream PR #872) so that
// libvfio-user's sample client runs against it unmodified:
//
//   IDs dead:beef, subsystem cafe:babe, class 0, INTx (ERR and REQ: 1 each).
//   BAR0: 8-byte I/O BAR. Writing a time t (seconds since the Epoch, u64 LE)
//         arms a one-shot timer for t; reading returns now - t. Only whole
//         8-byte accesses at offset 0 are allowed.
//   BAR1: 16 KiB of shared memory the client may mmap at [0, 4K) and
//         [8K, 12K); accesses read and write that memory.
//   When the timer fires: INTx, then DMA into the client's memory, directly
//   into the second region it mapped (4 x 1 KiB of 'A'..'D', marked dirty)
//   and through DMA_WRITE/DMA_READ messages into the first, each checked by
//   reading back.
//   Migration stream: BAR1 then the 8-byte BAR0, no header (as libvfio-user).
//   PRE_COPY sends BAR1 once; STOP_COPY sends BAR1 + BAR0.
import { DeviceContext } from '../src/server/context.js';
import type { DmaRegionInfo } from '../src/server/dma-table.js';
import type { MigrationStateName } from '../src/server/device.js';
import type { ServerOptions } from '../src/server/options.js';
import type { Logger } from '../src/util/logger.js';
import { silentLogger } from '../src/util/logger.js';
import { crc32 } from '../src/util/crc32.js';
import { Bar0Timer } from './timer/bar0-timer.js';
import { dmaRound } from './timer/dma-round.js';
import { BAR0_SIZE, BAR1_SIZE, TimerStateStream } from './timer/state-stream.js';

export { BAR0_SIZE, BAR1_SIZE } from './timer/state-stream.js';
export { DMA_CHUNK } from './timer/dma-round.js';

export interface TimerDeviceOptions extends ServerOptions {
  logger?: Logger;
  /** Called when the post-interrupt DMA check finds a mismatch (default: log). */
  onDmaMismatch?: (what: string) => void;
  /** Called after the post-interrupt DMA round finished (ok or not). */
  onDmaDone?: (ok: boolean) => void;
}

export interface TimerDevice {
  ctx: DeviceContext;
  /** Current BAR0 value (the programmed time). */
  readonly bar0: bigint;
  /** Stops the timer (also done on STOP_COPY). */
  cancelTimer(): void;
}

export { crc32 };

export function createTimerDevice(opts: TimerDeviceOptions = {}): TimerDevice {
  const log = opts.logger ?? silentLogger;
  let state: MigrationStateName = 'RUNNING';
  /** DMA regions in the order they were mapped: slot 0 = first, slot 1 = second. */
  const slots: DmaRegionInfo[] = [];
  let ctxRef: DeviceContext | null = null;
  const bar0 = new Bar0Timer(log, () => void fire());
  const stream = new TimerStateStream(
    { bar1: () => ctxRef!.region(1).memory!, getBar0: () => bar0.value, setBar0: (v) => (bar0.value = v) },
    log,
  );

  /** INTx, then a DMA round into the second mapped region directly and into the first by messages. */
  async function fire(): Promise<void> {
    const ctx = ctxRef!;
    const r = ctx.irq.trigger('intx');
    log.info(`timer fired: INTx ${r}`);
    let ok = true;
    try {
      if (slots.length >= 2) {
        ok = (await dmaRound(ctx, slots[1]!, false, log, opts.onDmaMismatch)) && ok;
        ok = (await dmaRound(ctx, slots[0]!, true, log, opts.onDmaMismatch)) && ok;
      } else {
        log.info(`${slots.length} DMA region(s) mapped: no DMA round`);
      }
    } catch (e) {
      ok = false;
      log.error(`DMA round failed: ${(e as Error).message}`);
    }
    opts.onDmaDone?.(ok);
  }

  const ctx = new DeviceContext(
    {
      vendorId: 0xdead,
      deviceId: 0xbeef,
      subsystemVendorId: 0xcafe,
      subsystemId: 0xbabe,
      classCode: 0,
      irqs: { intx: 1 },
      regions: {
        0: {
          size: BAR0_SIZE,
          kind: 'io',
          read: (off, n) => bar0.read(off, n),
          write: (off, data) => bar0.write(off, data, state === 'RUNNING' || state === 'PRE_COPY'),
        },
        1: { size: BAR1_SIZE, shared: { mmapAreas: [{ offset: 0, size: 0x1000 }, { offset: 0x2000, size: 0x1000 }] } },
      },
      dma: {
        onMap: (info) => {
          if (slots.length < 96) slots.push(info);
          log.debug(`DMA map 0x${info.iova.toString(16)}+0x${info.size.toString(16)}${info.mapped ? '' : ' (no fd)'}`);
        },
        onUnmap: (info) => {
          const i = slots.findIndex((s) => s.iova === info.iova && s.size === info.size);
          if (i >= 0) slots.splice(i, 1);
        },
      },
      reset: (reason) => {
        log.info(`reset (${reason})`);
        if (reason === 'lost-connection') slots.length = 0;
      },
      migration: {
        transition: (to, from) => {
          log.info(`migration ${from} -> ${to}`);
          state = to;
          switch (to) {
            case 'PRE_COPY':
              stream.rewind();
              break;
            case 'STOP_COPY':
              bar0.cancel();
              stream.rewind();
              break;
            case 'STOP':
              bar0.cancel();
              if (from === 'RESUMING') stream.restore();
              break;
            case 'RESUMING':
              stream.beginRestore();
              break;
            case 'RUNNING':
              bar0.arm();
              break;
          }
        },
        read: (max) => stream.read(max, state === 'STOP_COPY'),
        write: (data) => stream.write(data),
      },
    },
    { requireBusMaster: false, ...opts, logger: log },
  );
  ctxRef = ctx;

  return {
    ctx,
    get bar0() {
      return bar0.value;
    },
    cancelTimer: () => bar0.cancel(),
  };
}
