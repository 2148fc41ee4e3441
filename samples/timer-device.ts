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
import { Errno } from '../src/protocol/errno.js';
import { ProtocolError } from '../src/protocol/errors.js';
import type { Logger } from '../src/util/logger.js';
import { silentLogger } from '../src/util/logger.js';
import { crc32 } from '../src/util/crc32.js';

export const BAR1_SIZE = 0x4000;
export const BAR0_SIZE = 8;
export const DMA_CHUNK = 1024;

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
  let bar0 = 0n;
  let timer: NodeJS.Timeout | null = null;
  let state: MigrationStateName = 'RUNNING';
  /** DMA regions in the order they were mapped: slot 0 = first, slot 1 = second. */
  const slots: DmaRegionInfo[] = [];
  /** Migration stream position (save) or bytes received (restore). */
  let streamPos = 0;
  let incoming: Uint8Array[] = [];
  let ctxRef: DeviceContext | null = null;

  const nowSeconds = (): bigint => BigInt(Math.floor(Date.now() / 1000));

  function cancelTimer(): void {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function armTimer(): void {
    cancelTimer();
    if (bar0 === 0n) return;
    const delayMs = Math.max(0, Number(bar0 - nowSeconds()) * 1000);
    log.info(`timer armed for ${bar0} (in ${delayMs / 1000} s)`);
    timer = setTimeout(() => void fire(), delayMs);
  }

  async function fire(): Promise<void> {
    timer = null;
    const ctx = ctxRef!;
    const r = ctx.irq.trigger('intx');
    log.info(`timer fired: INTx ${r}`);
    let ok = true;
    try {
      if (slots.length >= 2) {
        ok = (await dmaRound(ctx, slots[1]!, false)) && ok;
        ok = (await dmaRound(ctx, slots[0]!, true)) && ok;
      } else {
        log.info(`${slots.length} DMA region(s) mapped: no DMA round`);
      }
    } catch (e) {
      ok = false;
      log.error(`DMA round failed: ${(e as Error).message}`);
    }
    opts.onDmaDone?.(ok);
  }

  /** 4 x 1 KiB writes, then 2 x 2 KiB reads compared by CRC. */
  async function dmaRound(ctx: DeviceContext, region: DmaRegionInfo, viaMessages: boolean): Promise<boolean> {
    const written = new Uint8Array(4 * DMA_CHUNK);
    for (let i = 0; i < 4; i++) {
      const data = new Uint8Array(DMA_CHUNK).fill(0x41 + i);
      written.set(data, i * DMA_CHUNK);
      const iova = region.iova + BigInt(i * DMA_CHUNK);
      if (viaMessages || !region.mapped) await ctx.dma.write(iova, data, { viaMessages: true });
      else {
        const v = ctx.dma.view(iova, DMA_CHUNK, { write: true });
        v.bytes.set(data);
        v.release();
      }
    }
    const back = new Uint8Array(4 * DMA_CHUNK);
    for (let i = 0; i < 2; i++) {
      const iova = region.iova + BigInt(i * 2 * DMA_CHUNK);
      const part = viaMessages || !region.mapped ? await ctx.dma.read(iova, 2 * DMA_CHUNK, { viaMessages: true }) : ctx.dma.readSync(iova, 2 * DMA_CHUNK);
      back.set(part, i * 2 * DMA_CHUNK);
    }
    const how = viaMessages ? 'messages' : 'direct';
    if (crc32(back) !== crc32(written)) {
      const what = `DMA ${how} at 0x${region.iova.toString(16)}: read-back CRC mismatch`;
      log.error(what);
      opts.onDmaMismatch?.(what);
      return false;
    }
    log.info(`DMA ${how} at 0x${region.iova.toString(16)}: ${written.length} bytes written and read back, CRC ${crc32(back).toString(16)}`);
    return true;
  }

  const bar1 = (): Uint8Array => ctxRef!.region(1).memory!;

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
          read: (off, n) => {
            if (off !== 0 || n !== 8) throw new ProtocolError(Errno.EINVAL, 'BAR0 takes 8-byte accesses at 0');
            const out = new Uint8Array(8);
            new DataView(out.buffer).setBigInt64(0, nowSeconds() - bar0, true);
            return out;
          },
          write: (off, data) => {
            if (off !== 0 || data.length !== 8) throw new ProtocolError(Errno.EINVAL, 'BAR0 takes 8-byte accesses at 0');
            bar0 = new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true);
            log.info(`BAR0 <- ${bar0}`);
            if (state === 'RUNNING' || state === 'PRE_COPY') armTimer();
          },
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
              streamPos = 0;
              break;
            case 'STOP_COPY':
              cancelTimer();
              streamPos = 0;
              break;
            case 'STOP':
              cancelTimer();
              if (from === 'RESUMING') restore();
              break;
            case 'RESUMING':
              incoming = [];
              break;
            case 'RUNNING':
              armTimer();
              break;
          }
        },
        read: (max) => {
          const total = state === 'STOP_COPY' ? BAR1_SIZE + BAR0_SIZE : BAR1_SIZE;
          const n = Math.min(max, total - streamPos);
          if (n <= 0) return new Uint8Array(0);
          const out = new Uint8Array(n);
          const whole = new Uint8Array(BAR1_SIZE + BAR0_SIZE);
          whole.set(bar1());
          new DataView(whole.buffer).setBigUint64(BAR1_SIZE, bar0, true);
          out.set(whole.subarray(streamPos, streamPos + n));
          streamPos += n;
          return out;
        },
        write: (data) => {
          incoming.push(data.slice());
        },
      },
    },
    { requireBusMaster: false, ...opts, logger: log },
  );
  ctxRef = ctx;

  /**
   * Applies what the source sent. Our own client forwards the PRE_COPY data
   * too, so the stream is k copies of BAR1 followed by BAR1 + BAR0: the last
   * BAR1 + 8 bytes are the device's final state.
   */
  function restore(): void {
    const total = incoming.reduce((n, c) => n + c.length, 0);
    if (total < BAR1_SIZE + BAR0_SIZE || (total - BAR0_SIZE) % BAR1_SIZE !== 0) {
      throw new ProtocolError(Errno.EINVAL, `migration stream of ${total} bytes is not BAR1 (+ BAR1)* + BAR0`);
    }
    const all = new Uint8Array(total);
    let off = 0;
    for (const c of incoming) {
      all.set(c, off);
      off += c.length;
    }
    bar1().set(all.subarray(total - BAR0_SIZE - BAR1_SIZE, total - BAR0_SIZE));
    bar0 = new DataView(all.buffer).getBigUint64(total - BAR0_SIZE, true);
    incoming = [];
    log.info(`restored BAR1 and BAR0 = ${bar0} from ${total} bytes`);
  }

  return {
    ctx,
    get bar0() {
      return bar0;
    },
    cancelTimer,
  };
}
