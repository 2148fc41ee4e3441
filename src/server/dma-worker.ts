// DMA from worker threads. An ArrayBuffer over an mmap cannot be handed to a
// worker (postMessage would copy it), so a worker maps the client's memory
// itself: the main thread tells it about every fd-backed region (the fd
// number is valid in the whole process) and, before it answers a DMA_UNMAP,
// asks every worker to drop its mapping and waits for the acknowledgement.
// A worker waits (up to the server's viewRevokeTimeoutMs) for its own views
// of the region to be released first, and revokes those still held. Regions
// over 4 GiB are mapped in windows, exactly as on the main thread.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { native } from '../native/binding.js';
import { Errno } from '../protocol/errno.js';
import { DmaError, type DmaView, type IovaLike } from './dma.js';
import { GuestMapping } from './dma-mapping.js';
import type { DmaRegion } from './dma-table.js';

type ToWorker =
  | { type: 'setup'; logging: SharedArrayBuffer }
  | { type: 'map'; iova: bigint; size: bigint; fileOffset: bigint; fd: number; readable: boolean; writable: boolean }
  | { type: 'unmap'; iova: bigint; size: bigint; id: number; timeoutMs: number };
type ToMain = { type: 'unmapped'; id: number } | { type: 'dirty'; iova: bigint; length: number };

/** What the main thread needs from the device context (kept minimal to avoid a cycle). */
export interface DmaWorkerHostContext {
  options: { viewRevokeTimeoutMs: number };
  dmaTable: {
    list(): readonly DmaRegion[];
    at(iova: bigint): DmaRegion | undefined;
    readonly loggingPageSize: number | null;
    addLoggingListener(fn: (on: boolean) => void): () => void;
  };
  addWorkerRevoker(revoke: (iova: bigint, size: bigint) => Promise<void>): () => void;
  addDmaMapListener(fn: (r: DmaRegion) => void): () => void;
}

/**
 * Main-thread side of one worker's DMA channel. Transfer `port` to the
 * worker (in workerData or a message) and call connectWorkerDma(port) there.
 */
export function createDmaWorkerPort(ctx: DmaWorkerHostContext): MessagePort {
  const { port1, port2 } = new MessageChannel();
  const waiting = new Map<number, () => void>();
  let nextId = 1;
  let open = true;
  const send = (m: ToWorker): void => {
    if (open) port1.postMessage(m);
  };
  // Workers report the pages they write only while dirty logging is on:
  // one Int32 they read (after writing) instead of a message per write.
  const loggingBuffer = new SharedArrayBuffer(4);
  const logging = new Int32Array(loggingBuffer);
  Atomics.store(logging, 0, ctx.dmaTable.loggingPageSize !== null ? 1 : 0);
  send({ type: 'setup', logging: loggingBuffer });
  const stopLogging = ctx.dmaTable.addLoggingListener((on) => Atomics.store(logging, 0, on ? 1 : 0));
  const announce = (r: DmaRegion): void => {
    if (r.fd === null || r.released) return;
    send({ type: 'map', iova: r.iova, size: r.size, fileOffset: r.fileOffset, fd: r.fd, readable: r.readable, writable: r.writable });
  };
  for (const r of ctx.dmaTable.list()) announce(r);
  const stopListening = ctx.addDmaMapListener(announce);
  const removeRevoker = ctx.addWorkerRevoker(
    (iova, size) =>
      new Promise<void>((resolve) => {
        if (!open) return resolve();
        const id = nextId++;
        waiting.set(id, resolve);
        send({ type: 'unmap', iova, size, id, timeoutMs: ctx.options.viewRevokeTimeoutMs });
      }),
  );
  port1.on('message', (m: ToMain) => {
    if (m.type === 'unmapped') {
      waiting.get(m.id)?.();
      waiting.delete(m.id);
    } else if (m.type === 'dirty') {
      // A worker wrote guest memory: the main thread keeps the dirty bitmaps.
      ctx.dmaTable.at(m.iova)?.markDirty(Number(m.iova - ctx.dmaTable.at(m.iova)!.iova), m.length);
    }
  });
  // A worker that exits cannot hold mappings any more: stop waiting for it.
  port1.on('close', () => {
    open = false;
    stopListening();
    stopLogging();
    removeRevoker();
    for (const w of waiting.values()) w();
    waiting.clear();
  });
  port1.unref();
  return port2;
}

interface WorkerRegion {
  iova: bigint;
  size: number;
  readable: boolean;
  writable: boolean;
  mapping: GuestMapping;
}

/** What a worker's DMA counted (for logs and tests). */
export interface WorkerDmaStats {
  /** Regions mapped in windows (over 4 GiB). */
  windowedRegions: number;
  /** Accesses (views and copies) that went through a windowed region. */
  windowedAccesses: number;
  /** Highest guest address accessed through a windowed region (-1n: none). */
  highestWindowedIova: bigint;
  /** Views still held when their region was unmapped (revoked). */
  revokedViews: number;
}

/** A worker's access to guest memory: the same zero-copy calls as ctx.dma for fd-backed regions. */
export class WorkerDma {
  private regions: WorkerRegion[] = [];
  /** Set by the main thread while dirty logging is on (until setup: report every write). */
  private logging: Int32Array | null = null;
  readonly stats: WorkerDmaStats = { windowedRegions: 0, windowedAccesses: 0, highestWindowedIova: -1n, revokedViews: 0 };

  constructor(private readonly port: MessagePort) {
    port.on('message', (m: ToWorker) => void this.onMessage(m));
  }

  private async onMessage(m: ToWorker): Promise<void> {
    if (m.type === 'setup') {
      this.logging = new Int32Array(m.logging);
      return;
    }
    if (m.type === 'map') {
      let mapping: GuestMapping;
      try {
        mapping = new GuestMapping({ fd: m.fd, fileOffset: m.fileOffset, size: Number(m.size), readable: m.readable, writable: m.writable, pageSize: native.pageSize() });
      } catch {
        // The main thread mapped this fd already; failing here (address
        // space) leaves the region unreachable from this worker (ENOENT).
        return;
      }
      if (mapping.windowCount > 1) this.stats.windowedRegions++;
      this.regions.push({ iova: m.iova, size: Number(m.size), readable: m.readable, writable: m.writable, mapping });
      this.regions.sort((a, b) => (a.iova < b.iova ? -1 : 1));
      return;
    }
    const i = this.regions.findIndex((r) => r.iova === m.iova && BigInt(r.size) === m.size);
    if (i >= 0) {
      // Out of the table first: no new views while the held ones drain.
      const [r] = this.regions.splice(i, 1);
      await r!.mapping.waitForViews(m.timeoutMs);
      this.stats.revokedViews += r!.mapping.unmap();
    }
    this.port.postMessage({ type: 'unmapped', id: m.id } satisfies ToMain);
  }

  private find(iova: bigint, length: number, write: boolean): { r: WorkerRegion; off: number } {
    const r = this.regions.find((x) => iova >= x.iova && iova + BigInt(length) <= x.iova + BigInt(x.size));
    if (!r) throw new DmaError(Errno.ENOENT, `IOVA 0x${iova.toString(16)}+${length} is not mapped in this worker`);
    if (write && !r.writable) throw new DmaError(Errno.EACCES, 'region is mapped read-only');
    if (r.mapping.windowCount > 1) {
      this.stats.windowedAccesses++;
      if (iova > this.stats.highestWindowedIova) this.stats.highestWindowedIova = iova;
    }
    return { r, off: Number(iova - r.iova) };
  }

  /** Number of regions this worker has mapped. */
  get mappedRegions(): number {
    return this.regions.length;
  }

  /**
   * A zero-copy view; it must lie in one region (and in one 1 GiB window of
   * a region over 4 GiB). Release every view, read ones too: an unmap of
   * its region waits for that.
   */
  view(iova: IovaLike, length: number, opts: { write?: boolean } = {}): DmaView {
    const a = BigInt(iova);
    const write = opts.write ?? false;
    const { r, off } = this.find(a, length, write);
    const held = r.mapping.hold(off, length);
    if (!held) throw new DmaError(Errno.EFAULT, `DMA view at 0x${a.toString(16)}+${length} crosses a 1 GiB window of a large region`);
    const { bytes, hold } = held;
    const mapping = r.mapping;
    if (!write) return { bytes, writable: false, release: () => mapping.release(hold) };
    this.dirty(a, length);
    let released = false;
    return {
      bytes,
      writable: true,
      release: () => {
        if (released) return;
        released = true;
        this.dirty(a, length);
        mapping.release(hold);
      },
    };
  }

  /** Copies guest memory out. */
  readSync(iova: IovaLike, length: number): Uint8Array {
    const { r, off } = this.find(BigInt(iova), length, false);
    const out = new Uint8Array(length);
    r.mapping.copyOut(off, out);
    return out;
  }

  /** Copies into guest memory and reports the pages dirty to the main thread. */
  writeSync(iova: IovaLike, data: Uint8Array): void {
    const { r, off } = this.find(BigInt(iova), data.length, true);
    r.mapping.copyIn(off, data);
    this.dirty(BigInt(iova), data.length);
  }

  /**
   * Reports written pages to the main thread's dirty bitmaps while logging
   * is on. Called after the write: the flag is read after the bytes are in
   * memory, so a write racing with the start of logging is reported.
   */
  private dirty(iova: bigint, length: number): void {
    if (this.logging && Atomics.load(this.logging, 0) === 0) return;
    this.port.postMessage({ type: 'dirty', iova, length } satisfies ToMain);
  }

  /** Waits until at least `n` regions are mapped (maps arrive asynchronously). */
  async waitForRegions(n: number, timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.regions.length < n) {
      if (Date.now() > end) throw new DmaError(Errno.ETIMEDOUT, `only ${this.regions.length} of ${n} regions mapped`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Unmaps everything and closes the port. */
  close(): void {
    for (const r of this.regions) r.mapping.unmap();
    this.regions = [];
    this.port.close();
  }
}

/** Worker side: wraps the port the main thread created with createDmaWorkerPort(). */
export function connectWorkerDma(port: MessagePort): WorkerDma {
  return new WorkerDma(port);
}
