// `vfio-user client SOCKET`: the sample client. It drives the timer sample
// (`vfio-user server`, or libvfio-user's sample server) through every command
// of the protocol, then live-migrates it to a destination server it spawns
// itself and receives, from the destination, the interrupt it programmed on
// the source. Each check stands alone: a failure is reported and the run
// goes on; what the server does not offer is reported as skipped.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VfioUserClient } from '../src/client/client.js';
import { migrate, type MigrationProgress } from '../src/client/migrate.js';
import type { GuestMemory } from '../src/client/guest-memory.js';
import { Errno, errnoName } from '../src/protocol/errno.js';
import { RemoteError } from '../src/protocol/errors.js';
import { decodeConfigSpace } from '../src/pci/decode.js';
import { crc32 } from '../src/util/crc32.js';
import type { CliCommand, CliIo } from './types.js';

const BAR1 = 1;
const BAR1_SIZE = 0x4000;
const PAGE = 4096;
const MSG_IOVA = 0x100000n;
const FD_IOVA = 0x200000n;

class Mismatch extends Error {}

/**
 * Prints report lines and counts them. A check that throws is a failure of
 * that check only: the run goes on, so one quirk of a server (a feature it
 * lacks, a bug in one callback) does not hide what the rest of it does.
 */
class Report {
  failures = 0;
  skipped = 0;
  constructor(private readonly io: CliIo) {}
  ok(what: string): void {
    this.io.out(`  ok    ${what}\n`);
  }
  fail(what: string, detail = ''): void {
    this.failures++;
    this.io.out(`  FAIL  ${what}${detail ? `: ${detail}` : ''}\n`);
  }
  check(cond: boolean, what: string, detail = ''): void {
    if (cond) this.ok(what);
    else this.fail(what, detail);
  }
  /** Not run, and not a failure: the server did not offer what it needs, or an earlier step failed. */
  skip(what: string, why: string): void {
    this.skipped++;
    this.io.out(`  skip  ${what}: ${why}\n`);
  }
  section(title: string): void {
    this.io.out(`${title}\n`);
  }
  /** Runs one step; an exception fails it (reported under `what`) and yields undefined. */
  async step<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn();
    } catch (e) {
      this.fail(what, e instanceof Error ? e.message : String(e));
      if (this.io.verbose && e instanceof Error && e.stack) this.io.err(`${e.stack}\n`);
      return undefined;
    }
  }
}

const now = (): bigint => BigInt(Math.floor(Date.now() / 1000));
const u64le = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (Math.random() * 256) | 0;
  return out;
}

/** The pattern the timer device writes after its interrupt: 4 x 1 KiB of 'A'..'D'. */
function checkDmaPattern(mem: GuestMemory): boolean {
  if (mem.bytes.length < 4096) return false;
  for (let i = 0; i < 4; i++) {
    const chunk = mem.bytes.subarray(i * 1024, (i + 1) * 1024);
    if (!chunk.every((b) => b === 0x41 + i)) return false;
  }
  return true;
}

async function waitForFile(path: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`${path} did not appear`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `vfio-user server SOCKET` (the destination) as a child process,
 * from the same code this client runs: the TypeScript sources under tsx, or
 * the compiled CLI.
 */
function spawnServer(path: string, verbose: boolean): ChildProcess {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(fromSource ? './run.ts' : './run.js', import.meta.url));
  const args = [...(fromSource ? ['--import', 'tsx'] : []), entry, 'server', ...(verbose ? ['-v'] : []), path];
  return spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
}

function progressPrinter(io: CliIo, total: number): (p: MigrationProgress) => void {
  const tty = process.stdout.isTTY === true;
  let last = '';
  return (p) => {
    const frac = Math.min(1, p.bytes / total);
    const width = 30;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const extra = p.iteration ? ` pass ${p.iteration}` : '';
    const dirty = p.dirtyPages !== undefined ? `, ${p.dirtyPages} dirty pages` : '';
    const line = `  [${bar}] ${p.phase}${extra}: ${p.bytes} bytes${dirty}`;
    if (tty) {
      io.out(`\r${line.padEnd(last.length)}`);
      if (p.phase === 'done') io.out('\n');
    } else if (p.phase !== 'connect') {
      io.out(`${line}\n`);
    }
    last = line;
  };
}

export const clientCommand: CliCommand = {
  name: 'client',
  summary: 'exercise every command of the timer sample, then live-migrate it',
  usage: [
    'usage: vfio-user client [-v] SOCKET',
    '',
    'Connects to `vfio-user server SOCKET`, exercises every vfio-user command',
    '(negotiation, info, regions, IRQs, DMA with and without fds, DMA by',
    'message, dirty logging, reset, write-multi, region mmap), programs an',
    'interrupt, live-migrates the device to a destination server it starts on',
    'SOCKET.migrated while a simulated guest writes BAR1, and receives the',
    'interrupt from the destination. Against any other server, what it did',
    'not advertise (write_multiple, migration, interrupts by message) is',
    'skipped and a failed check does not stop the run. Exits 1 if any check',
    'failed.',
    '',
  ].join('\n'),
  positionals: ['SOCKET'],
  async run(args, io) {
    const path = args.positionals[0]!;
    const rep = new Report(io);
    const started = Date.now();
    const state: RunState = { src: null, dst: null, dest: null };
    try {
      await exercise(path, rep, io, state);
    } catch (e) {
      // Only connecting can end the run early; every later step reports for itself.
      rep.fail('run', (e as Error).message);
      if (io.verbose && (e as Error).stack) io.err(`${(e as Error).stack}\n`);
    } finally {
      await state.dst?.close().catch(() => {});
      await state.src?.close().catch(() => {});
      if (state.dest) state.dest.kill('SIGTERM');
    }
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const skipped = rep.skipped ? ` (${rep.skipped} skipped)` : '';
    io.out(rep.failures === 0 ? `All checks passed${skipped} in ${secs} s.\n` : `${rep.failures} check(s) failed${skipped} (${secs} s).\n`);
    return rep.failures === 0 ? 0 : 1;
  },
};

/** What the finally of run() must clean up. */
interface RunState {
  src: VfioUserClient | null;
  dst: VfioUserClient | null;
  dest: ChildProcess | null;
}

async function exercise(path: string, rep: Report, io: CliIo, st: RunState): Promise<void> {
  const destPath = `${path}.migrated`;
  // -- negotiation and discovery -------------------------------------------------
  const src = await VfioUserClient.connect(path, { logger: io.logger, maxDataXferSize: 1024, irqMessages: true });
  st.src = src;
  rep.section(`Connected to ${path}`);
  rep.ok(`VERSION 0.${src.version.minor}: max_data_xfer_size ${src.serverCaps.maxDataXferSize}, max_msg_fds ${src.serverCaps.maxMsgFds}, migration pgsize ${src.serverCaps.migration?.pgsize ?? '-'}, interrupts by message ${src.irqMessages ? 'on' : 'off'}`);
  await rep.step('GET_INFO', async () => {
    const info = await src.getDeviceInfo();
    rep.check(info.numRegions === 9 && info.numIrqs === 5, `GET_INFO: ${info.numRegions} regions, ${info.numIrqs} IRQ types`);
  });
  await rep.step('GET_REGION_INFO', async () => {
    const sizes: string[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await src.getRegionInfo(i);
      if (r.size > 0n) sizes.push(`${i}:${r.size}${r.mmapAreas.length ? `(${r.mmapAreas.length} mmap areas)` : ''}`);
    }
    rep.check(sizes.join(' ') === '0:8 1:16384(2 mmap areas) 7:256', `GET_REGION_INFO: ${sizes.join(' ')}`);
  });
  await rep.step('GET_IRQ_INFO', async () => {
    const irqCounts: number[] = [];
    for (let i = 0; i < 5; i++) irqCounts.push((await src.getIrqInfo(i)).count);
    rep.check(irqCounts.join(',') === '1,0,0,1,1', `GET_IRQ_INFO: INTx ${irqCounts[0]}, MSI ${irqCounts[1]}, MSI-X ${irqCounts[2]}, ERR ${irqCounts[3]}, REQ ${irqCounts[4]}`);
  });
  await rep.step('config space', async () => {
    const cfg = decodeConfigSpace(await src.regionRead(7, 0, 256));
    rep.check(cfg.vendorId === 0xdead && cfg.deviceId === 0xbeef && cfg.subsystemVendorId === 0xcafe && cfg.subsystemId === 0xbabe, `config space: ${hex4(cfg.vendorId)}:${hex4(cfg.deviceId)} subsystem ${hex4(cfg.subsystemVendorId)}:${hex4(cfg.subsystemId)}`);
  });
  await rep.step('GET_REGION_IO_FDS BAR0', async () => {
    const io0 = await src.getRegionIoFds(0);
    rep.ok(`GET_REGION_IO_FDS BAR0: ${io0.count} ioeventfds`);
  });
  await rep.step('REGION_READ of region 0xdeadbeef refused', async () => {
    try {
      await src.regionRead(0xdeadbeef, 0, 4);
      rep.fail('REGION_READ of region 0xdeadbeef refused', 'it succeeded');
    } catch (e) {
      rep.check(e instanceof RemoteError && e.errno === Errno.EINVAL, `REGION_READ of region 0xdeadbeef refused (${e instanceof RemoteError ? errnoName(e.errno) : String(e)})`);
    }
  });
  await rep.step('DEVICE_RESET', async () => {
    await src.reset();
    rep.ok('DEVICE_RESET');
  });

  // -- regions: write, write-multi, mmap -----------------------------------------
  const pattern = randomBytes(64);
  await rep.step('REGION_WRITE/READ of BAR1', async () => {
    await src.regionWrite(BAR1, 0x100, pattern);
    const back = await src.regionRead(BAR1, 0x100, 64);
    rep.check(eq(back, pattern), 'REGION_WRITE/READ of BAR1', 'read back other bytes than written at 0x100');
  });
  if (!src.serverCaps.writeMultiple) rep.skip('REGION_WRITE_MULTI', 'the server did not advertise write_multiple');
  else {
    await rep.step('REGION_WRITE_MULTI', async () => {
      const entries = [0, 1, 2, 3].map((i) => ({ region: BAR1, offset: 0x200 + i * 8, data: u64le(BigInt(i + 1) * 0x0101010101010101n) }));
      await src.regionWriteMulti(entries);
      const multi = await src.regionRead(BAR1, 0x200, 32);
      rep.check(entries.every((e, i) => eq(multi.subarray(i * 8, i * 8 + 8), e.data)), 'REGION_WRITE_MULTI of 4 entries');
    });
  }
  await rep.step('region mmap', async () => {
    const mapped = await src.mapRegion(BAR1);
    try {
      const area = mapped.areaAt(0x2000, 16);
      const first = mapped.areaAt(0, 0x40);
      if (!area || !first) throw new Mismatch(`BAR1's mmap areas do not cover [0, 0x40) and [0x2000, 0x2010)`);
      area.bytes.set(pattern.subarray(0, 16), 0x10);
      const viaMsg = await src.regionRead(BAR1, 0x2010, 16);
      await src.regionWrite(BAR1, 0x20, pattern.subarray(16, 32));
      const seenByServer = eq(viaMsg, pattern.subarray(0, 16));
      const seenByClient = eq(first.bytes.subarray(0x20, 0x30), pattern.subarray(16, 32));
      rep.check(seenByServer && seenByClient, `region mmap: ${mapped.areas.length} areas, writes seen both ways`, `${seenByServer ? '' : 'REGION_READ does not return what was written through the mapping'}${!seenByServer && !seenByClient ? '; ' : ''}${seenByClient ? '' : 'the mapping does not show a REGION_WRITE'}`);
    } finally {
      mapped.unmap();
    }
  });

  // -- DMA and interrupts -------------------------------------------------------
  const mems = await rep.step('DMA_MAP with and without fd, DMA_UNMAP', async () => {
    // The device DMAs by message into the first region mapped, directly into the second.
    const mem0 = await src.createGuestMemory({ iova: MSG_IOVA, size: 4 * PAGE, useFd: false, name: 'guest-msg' });
    const mem1 = await src.createGuestMemory({ iova: FD_IOVA, size: 4 * PAGE, useFd: true, name: 'guest-fd' });
    const spare = await src.createGuestMemory({ iova: 0x300000, size: PAGE, useFd: true, name: 'spare' });
    await spare.unmap();
    rep.ok('DMA_MAP with and without fd, DMA_UNMAP');
    return { mem0, mem1 };
  });
  const canMigrate = src.serverCaps.migration !== undefined;
  const armed = await rep.step('SET_IRQS INTx eventfd', async () => {
    await src.enableIrqEventfds('intx', 0, 1);
    if (canMigrate) await src.startDirtyLogging(PAGE);
    rep.ok(`SET_IRQS INTx eventfd${canMigrate ? '; dirty logging started' : ''}`);
    return true;
  });
  if (!canMigrate) rep.skip('dirty logging', 'the server did not advertise migration');
  if (!armed) rep.skip('device interrupt and DMA', 'no interrupt eventfd');
  else {
    const irqVia: string[] = [];
    const onIrq = (e: { type: string; via: string }) => irqVia.push(e.via);
    src.on('irq', onIrq);
    io.logger.debug(`source interrupt vectors: ${JSON.stringify(src.irqVectors())}`);
    const fired = await rep.step('device interrupt', async () => {
      await src.regionWrite(0, 0, u64le(now() + 1n));
      rep.ok('BAR0 programmed: interrupt in 1 s');
      await src.waitForIrq('intx', 0, { timeoutMs: 5000 });
      return true;
    });
    if (fired && mems) {
      const { mem0, mem1 } = mems;
      // The device writes, then reads back (4 + 4 messages at our 1 KiB transfer size).
      await waitUntil(() => checkDmaPattern(mem0) && checkDmaPattern(mem1) && src.stats.dmaReads >= 4, 5000).catch(() => {});
      rep.check(checkDmaPattern(mem1), 'device DMA directly into fd-backed memory');
      rep.check(checkDmaPattern(mem0) && src.stats.dmaWrites === 4 && src.stats.dmaReads === 4, `device DMA by message: ${src.stats.dmaWrites} DMA_WRITE, ${src.stats.dmaReads} DMA_READ served`);
    } else if (fired) rep.skip('device DMA', 'DMA_MAP failed');
    if (fired) {
      await checkIrqVia(rep, src, irqVia, 'INTx received');
    }
    src.off('irq', onIrq);
    if (canMigrate && mems) {
      await rep.step('dirty pages', async () => {
        const d1 = await src.dirtyReport(mems.mem1.iova, mems.mem1.size, PAGE);
        const d0 = await src.collectDirty(mems.mem0, PAGE);
        rep.check(d1.bitmap[0] === 0x01 && d0[0] === 0x01, 'dirty pages: direct DMA in the server bitmap, message DMA in the client\'s');
        await src.stopDirtyLogging();
      });
    }
  }

  // -- live migration ------------------------------------------------------------
  rep.section('Live migration');
  if (!canMigrate) {
    rep.skip('live migration', 'the server did not advertise migration');
    return;
  }
  const dest = spawnServer(destPath, io.verbose);
  st.dest = dest;
  const destExit = new Promise<number>((resolve) => dest.on('exit', (code) => resolve(code ?? 1)));
  let lastGuest: Uint8Array = new Uint8Array(0);
  const result = await rep.step('live migration', async () => {
    await waitForFile(destPath, 10000);
    // Programmed once the destination is up, so the interrupt falls after the switch-over.
    await src.regionWrite(0, 0, u64le(now() + 3n));
    rep.ok(`destination server started on ${destPath}; source programmed to interrupt in 3 s`);
    let guestWrites = 0;
    const guestWrite = async (): Promise<void> => {
      const g = randomBytes(BAR1_SIZE);
      await src.regionWrite(BAR1, 0, g);
      lastGuest = g;
      guestWrites++;
    };
    await guestWrite();
    const r = await migrate(src, destPath, {
      client: { logger: io.logger, maxDataXferSize: 1024, irqMessages: true },
      chunkSize: 1024,
      maxPreCopyIterations: 3,
      betweenIterations: async () => {
        for (let i = 0; i < 4; i++) await guestWrite();
      },
      onProgress: progressPrinter(io, BAR1_SIZE * 2 + 8),
    });
    st.dst = r.destination;
    rep.ok(`migrated ${r.preCopyBytes} bytes in pre-copy (${r.preCopyIterations} passes) and ${r.stopCopyBytes} in stop-copy while the guest wrote BAR1 ${guestWrites} times; downtime ${r.downtimeMs} ms`);
    return r;
  });
  if (!result) {
    rep.skip('the device on the destination', 'the migration failed');
  } else {
    const dst = result.destination;
    await rep.step('BAR1 on the destination', async () => {
      rep.check(crc32(await dst.regionRead(BAR1, 0, BAR1_SIZE)) === crc32(lastGuest), 'BAR1 on the destination equals the last guest write');
    });
    rep.check(dst.guestMemories().length === 2 && dst.irqVectors().length === 1, 'guest memory and INTx re-established on the destination');
    const dmem0 = dst.guestMemories().find((m) => m.iova === MSG_IOVA);
    const dmem1 = dst.guestMemories().find((m) => m.iova === FD_IOVA);
    const destVia: string[] = [];
    dst.on('irq', (e) => {
      io.logger.debug(`destination irq ${e.type}[${e.vector}] via ${e.via}`);
      destVia.push(e.via);
    });
    // From here on the destination's own mappings of the same memfds.
    dmem0?.bytes.fill(0);
    dmem1?.bytes.fill(0);
    await st.src?.close();
    st.src = null;
    const fired = await rep.step('interrupt from the destination', async () => {
      await dst.waitForIrq('intx', 0, { timeoutMs: 8000 });
      return true;
    });
    if (fired) {
      if (dmem0 && dmem1) await waitUntil(() => checkDmaPattern(dmem0) && checkDmaPattern(dmem1) && dst.stats.dmaReads >= 4, 5000).catch(() => {});
      await checkIrqVia(rep, dst, destVia, 'interrupt programmed on the source delivered by the destination');
      rep.check(!!dmem0 && !!dmem1 && checkDmaPattern(dmem0) && checkDmaPattern(dmem1), 'destination DMA into the same guest memory, direct and by message');
    }
    await rep.step('closing the destination', async () => {
      await dst.dmaUnmapAll();
      await dst.close();
    });
    st.dst = null;
  }
  if (!result) dest.kill('SIGTERM');
  const code = await destExit;
  st.dest = null;
  if (result) rep.check(code === 0, `destination server exited ${code}`);
}

/** Interrupt delivery: by eventfd always, by message too when the server offered it. */
async function checkIrqVia(rep: Report, c: VfioUserClient, via: string[], what: string): Promise<void> {
  const byMessage = c.irqMessages;
  await waitUntil(() => via.includes('eventfd') && (!byMessage || via.includes('message')), 2000).catch(() => {});
  const how = [...new Set(via)].join(' and ') || 'nothing';
  if (byMessage) rep.check(via.includes('eventfd') && via.includes('message'), `${what} (${how})`);
  else {
    rep.check(via.includes('eventfd'), `${what} (${how})`);
    rep.skip(`${what} by message`, 'the server did not offer interrupts by message');
  }
}

const hex4 = (v: number | undefined): string => (v ?? 0).toString(16).padStart(4, '0');

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Mismatch('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
