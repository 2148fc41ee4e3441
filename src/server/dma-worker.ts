// DMA from worker threads. An ArrayBuffer over an mmap cannot be handed to a
// worker (postMessage would copy it), so a worker maps the client's memory
// itself: the main thread tells it about every fd-backed region (the fd
// number is valid in the whole process) and, before it answers a DMA_UNMAP,
// asks every worker to drop its mapping and waits for the acknowledgement.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { native } from '../native/binding.js';
import { Errno } from '../protocol/errno.js';
import { DmaError, type DmaView, type IovaLike } from './dma.js';
import type { DmaRegion } from './dma-table.js';

type ToWorker =
  | { type: 'map'; iova: bigint; size: bigint; fileOffset: bigint; fd: number; readable: boolean; writable: boolean }
  | { type: 'unmap'; iova: bigint; size: bigint; id: number };
type ToMain = { type: 'unmapped'; id: number } | { type: 'dirty'; iova: bigint; length: number };

/** What the main thread needs from the device context (kept minimal to avoid a cycle). */
export interface DmaWorkerHostContext {
  dmaTable: { list(): readonly DmaRegion[]; at(iova: bigint): DmaRegion | undefined };
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
        send({ type: 'unmap', iova, size, id });
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
  buffer: ArrayBuffer;
  lead: number;
}

/** A worker's access to guest memory: the same zero-copy calls as ctx.dma for fd-backed regions. */
export class WorkerDma {
  private regions: WorkerRegion[] = [];

  constructor(private readonly port: MessagePort) {
    port.on('message', (m: ToWorker) => this.onMessage(m));
  }

  private onMessage(m: ToWorker): void {
    if (m.type === 'map') {
      const page = native.pageSize();
      const lead = Number(m.fileOffset % BigInt(page));
      const size = Number(m.size);
      const prot = (m.readable ? native.PROT_READ : 0) | (m.writable ? native.PROT_WRITE : 0);
      const buffer = native.mmap(m.fd, m.fileOffset - BigInt(lead), size + lead, prot || native.PROT_READ);
      this.regions.push({ iova: m.iova, size, readable: m.readable, writable: m.writable, buffer, lead });
      this.regions.sort((a, b) => (a.iova < b.iova ? -1 : 1));
    } else {
      const i = this.regions.findIndex((r) => r.iova === m.iova && BigInt(r.size) === m.size);
      if (i >= 0) {
        // Detach first: views this worker still holds read as empty from now on.
        native.munmap(this.regions[i]!.buffer);
        this.regions.splice(i, 1);
      }
      this.port.postMessage({ type: 'unmapped', id: m.id } satisfies ToMain);
    }
  }

  private find(iova: bigint, length: number, write: boolean): { r: WorkerRegion; off: number } {
    const r = this.regions.find((x) => iova >= x.iova && iova + BigInt(length) <= x.iova + BigInt(x.size));
    if (!r) throw new DmaError(Errno.ENOENT, `IOVA 0x${iova.toString(16)}+${length} is not mapped in this worker`);
    if (write && !r.writable) throw new DmaError(Errno.EACCES, 'region is mapped read-only');
    return { r, off: Number(iova - r.iova) };
  }

  /** Number of regions this worker has mapped. */
  get mappedRegions(): number {
    return this.regions.length;
  }

  /** A zero-copy view of guest memory mapped in this worker (see DmaController.view). */
  view(iova: IovaLike, length: number, opts: { write?: boolean } = {}): DmaView {
    const a = BigInt(iova);
    const write = opts.write ?? false;
    const { r, off } = this.find(a, length, write);
    const bytes = new Uint8Array(r.buffer, r.lead + off, length);
    if (!write) return { bytes, writable: false, release: () => {} };
    this.dirty(a, length);
    return { bytes, writable: true, release: () => this.dirty(a, length) };
  }

  /** Copies guest memory out. */
  readSync(iova: IovaLike, length: number): Uint8Array {
    return this.view(iova, length).bytes.slice();
  }

  /** Copies into guest memory and reports the pages dirty to the main thread. */
  writeSync(iova: IovaLike, data: Uint8Array): void {
    const { r, off } = this.find(BigInt(iova), data.length, true);
    new Uint8Array(r.buffer, r.lead + off, data.length).set(data);
    this.dirty(BigInt(iova), data.length);
  }

  private dirty(iova: bigint, length: number): void {
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
    for (const r of this.regions) native.munmap(r.buffer);
    this.regions = [];
    this.port.close();
  }
}

/** Worker side: wraps the port the main thread created with createDmaWorkerPort(). */
export function connectWorkerDma(port: MessagePort): WorkerDma {
  return new WorkerDma(port);
}
