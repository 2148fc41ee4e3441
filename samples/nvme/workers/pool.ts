// The controller's side of `--io-workers N`: N worker threads serve the I/O
// queues (a CQ goes to worker (qid - 1) mod N, its SQs with it), while this
// thread keeps the registers, the admin queue and the queue registry the
// admin commands validate against. Doorbells of I/O queues are handed to the
// owning worker through shared memory (doorbells.ts), guest memory and
// interrupts through the library's worker channels (ctx.dmaWorkerPort(),
// ctx.irqWorkerPort()). Nothing here assumes which thread rings: ring() only
// touches shared memory.
import { Worker } from 'node:worker_threads';
import type { DeviceContext } from '../../../src/server/context.js';
import type { Logger } from '../../../src/util/logger.js';
import type { NvmeController } from '../controller.js';
import { NvmeStatus, type Completion, type CompletionQueue, type Sqe, type SubmissionQueue } from '../queues.js';
import { ADMIN_OPC, SC } from '../registers.js';
import { DoorbellHandoff } from './doorbells.js';
import { IRQ_MODE_MSIX, IRQ_MODE_NONE, type FromIoWorker, type IoWorkerData, type ToIoWorker } from './protocol.js';
import { createStatsBuffer, readStats, STAT_FIELDS, type IoWorkerStats } from './stats.js';

/** Most I/O worker threads a controller may have. */
export const MAX_IO_WORKERS = 16;

export interface IoWorkerPoolOptions {
  /** Number of worker threads (1..MAX_IO_WORKERS). */
  workers: number;
  backing: string;
  size: number;
  readOnly: boolean;
  /** Highest queue id (the controller's I/O queue limit). */
  maxQid: number;
  log: Logger;
  /** A worker hit a fatal error (unreadable SQ, unwritable CQ): report CSTS.CFS. */
  onFatal(why: string): void;
  /** Some worker's share of the INTx level changed. */
  onIntxChange(): void;
}

/** An I/O worker failed to start or died. */
export class IoWorkerError extends Error {
  readonly code = 'ERR_NVME_IO_WORKER';
}

interface Slot {
  worker: Worker;
  intx: boolean;
}

/** Where a worker's code lives: compiled JavaScript next to this file, or TypeScript run through tsx. */
function workerEntry(): { url: URL; entry?: string } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) return { url: new URL('./bootstrap.mjs', here), entry: new URL('./entry.ts', here).href };
  return { url: new URL('./entry.js', here) };
}

export class IoWorkerPool {
  readonly doorbells: DoorbellHandoff;
  private readonly slots: Slot[] = [];
  private readonly statsBuffer: SharedArrayBuffer;
  /** The interrupt mode the workers read (protocol.ts), refreshed here whenever it may have changed. */
  private readonly irqMode = new Int32Array(new SharedArrayBuffer(4));
  private readonly waiting = new Map<number, () => void>();
  private nextSeq = 1;
  private stopWatching: () => void = () => {};
  private closing = false;

  private constructor(
    private readonly ctx: DeviceContext,
    private readonly opts: IoWorkerPoolOptions,
  ) {
    this.doorbells = DoorbellHandoff.create(opts.maxQid, opts.workers);
    this.statsBuffer = createStatsBuffer(opts.workers);
  }

  /** Starts the workers and waits until each serves doorbells. */
  static async start(ctx: DeviceContext, opts: IoWorkerPoolOptions): Promise<IoWorkerPool> {
    if (!Number.isInteger(opts.workers) || opts.workers < 1 || opts.workers > MAX_IO_WORKERS) {
      throw new RangeError(`I/O workers must be 1..${MAX_IO_WORKERS}, not ${opts.workers}`);
    }
    const pool = new IoWorkerPool(ctx, opts);
    const refresh = (): void => void pool.refreshIrqMode();
    ctx.on('irqStateChange', refresh);
    pool.stopWatching = () => ctx.off('irqStateChange', refresh);
    const { url, entry } = workerEntry();
    const ready: Promise<void>[] = [];
    for (let i = 0; i < opts.workers; i++) {
      const dmaPort = ctx.dmaWorkerPort();
      const irqPort = ctx.irqWorkerPort();
      const data: IoWorkerData = {
        index: i,
        backing: opts.backing,
        size: opts.size,
        readOnly: opts.readOnly,
        doorbells: pool.doorbells.buffers,
        stats: pool.statsBuffer,
        irqMode: pool.irqMode.buffer as SharedArrayBuffer,
        dmaPort,
        irqPort,
        ...(entry ? { entry } : {}),
      };
      const worker = new Worker(url, { workerData: data, transferList: [dmaPort, irqPort] });
      const slot: Slot = { worker, intx: false };
      pool.slots.push(slot);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.once('error', (e) => reject(new IoWorkerError(`I/O worker ${i} failed to start: ${e.message}`)));
          worker.on('message', (m: FromIoWorker) => {
            if (m.type === 'ready') resolve();
            pool.onMessage(slot, m);
          });
        }),
      );
      worker.on('error', (e) => {
        if (!pool.closing) opts.onFatal(`I/O worker ${i} died: ${e.message}`);
      });
      worker.on('exit', () => {
        // A worker that is gone answers nothing: do not wait for it.
        if (!pool.closing) opts.onFatal(`I/O worker ${i} exited`);
        for (const w of pool.waiting.values()) w();
        pool.waiting.clear();
      });
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  private onMessage(slot: Slot, m: FromIoWorker): void {
    switch (m.type) {
      case 'done': {
        const w = this.waiting.get(m.seq);
        this.waiting.delete(m.seq);
        w?.();
        return;
      }
      case 'log':
        this.opts.log[m.level](m.message);
        return;
      case 'fatal':
        this.opts.onFatal(m.message);
        return;
      case 'irq': {
        // The worker could not write the eventfd itself (masked, gated, no fd yet, or a mode change).
        const mode = this.refreshIrqMode();
        if (mode === IRQ_MODE_MSIX) this.ctx.irq.trigger('msix', m.iv);
        else if (mode > 0) this.ctx.irq.trigger('msi', m.iv & (mode - 1));
        return;
      }
      case 'intx':
        slot.intx = m.want;
        this.opts.onIntxChange();
        return;
      default:
        return;
    }
  }

  get size(): number {
    return this.slots.length;
  }

  /** The worker that serves CQ `cqid` (and the SQs completing into it). */
  workerFor(cqid: number): number {
    return (cqid - 1) % this.slots.length;
  }

  private post(w: number, m: ToIoWorker): void {
    this.slots[w]?.worker.postMessage(m);
  }

  /** Sends a request to one worker (or all) and resolves once each answered. */
  private request(w: number | 'all', make: (seq: number) => ToIoWorker): Promise<void> {
    const targets = w === 'all' ? this.slots.map((_, i) => i) : [w];
    return Promise.all(
      targets.map(
        (t) =>
          new Promise<void>((resolve) => {
            if (this.closing) return resolve();
            const seq = this.nextSeq++;
            this.waiting.set(seq, resolve);
            this.post(t, make(seq));
          }),
      ),
    ).then(() => undefined);
  }

  /**
   * Publishes how interrupts go now: MSI-X, MSI with its enabled vector
   * count, or neither (INTx, from the workers' shares of the level). The
   * context says when interrupt state changes (MSI or MSI-X enable among
   * it); refreshed also on queue creation, every resume and whenever a
   * worker hands an interrupt back.
   */
  refreshIrqMode(): number {
    const cfg = this.ctx.config;
    const msi = cfg.msiState();
    const mode = cfg.msixControl()?.enabled ? IRQ_MODE_MSIX : msi?.enabled ? msi.vectors : IRQ_MODE_NONE;
    Atomics.store(this.irqMode, 0, mode);
    return mode;
  }

  /** An I/O CQ was created: its worker serves it from now on. */
  createCq(cq: CompletionQueue): void {
    this.refreshIrqMode();
    const w = this.workerFor(cq.id);
    this.doorbells.assign(cq.id, w);
    this.post(w, { type: 'createCq', id: cq.id, base: Number(cq.base), size: cq.size, iv: cq.iv, ien: cq.ien });
  }

  /** An I/O SQ was created: served by the worker of its CQ. */
  createSq(sq: SubmissionQueue): void {
    const w = this.workerFor(sq.cqid);
    this.doorbells.assign(sq.id, w);
    this.post(w, { type: 'createSq', id: sq.id, base: Number(sq.base), size: sq.size, cqid: sq.cqid });
  }

  /** Resolves once the SQ's running commands completed and its worker dropped it. */
  async deleteSq(qid: number): Promise<void> {
    const w = this.doorbells.ownerOf(qid);
    if (w < 0) return;
    await this.request(w, (seq) => ({ type: 'deleteSq', id: qid, seq }));
    if (this.doorbells.ownerOf(qid) === w) this.doorbells.assign(qid, -1);
  }

  deleteCq(qid: number): void {
    const w = this.workerFor(qid);
    this.post(w, { type: 'deleteCq', id: qid });
  }

  /** A doorbell of an I/O queue (index 2*qid or 2*qid+1). False when no worker serves the queue. */
  ring(index: number, value: number): boolean {
    return this.doorbells.ring(index, value);
  }

  /**
   * Runs an admin command with the workers in mind: Doorbell Buffer Config
   * is refused (the workers read their doorbells from shared memory, not
   * from shadow doorbells in guest memory; Linux then goes on with MMIO
   * doorbells), and queue creation and deletion are mirrored (afterAdmin).
   */
  admin<S extends Sqe>(
    c: NvmeController,
    sqe: S,
    run: (c: NvmeController, sqe: S) => Completion | Promise<Completion> | null,
  ): Completion | Promise<Completion> | null {
    if (sqe.opcode === ADMIN_OPC.DOORBELL_BUFFER_CONFIG) {
      throw new NvmeStatus(SC.INVALID_OPCODE, 'shadow doorbells are not offered with I/O workers');
    }
    return this.afterAdmin(c, sqe, run(c, sqe));
  }

  /**
   * Mirrors a finished admin command onto the workers: created queues are
   * handed to their worker, and a Delete I/O SQ completes only once the
   * worker's running commands of that queue have.
   */
  afterAdmin(c: NvmeController, sqe: Sqe, r: Completion | Promise<Completion> | null): Completion | Promise<Completion> | null {
    // The controller refills one Sqe for every command: keep what is needed past an await.
    return this.mirror(c, sqe.opcode, sqe.cdw10 & 0xffff, r);
  }

  private mirror(c: NvmeController, opcode: number, qid: number, r: Completion | Promise<Completion> | null): Completion | Promise<Completion> | null {
    if (r === null) return r;
    if (typeof (r as Promise<Completion>).then === 'function') {
      return (r as Promise<Completion>).then((done) => this.mirror(c, opcode, qid, done)!);
    }
    const done = r as Completion;
    if (done.status !== 0) return done;
    switch (opcode) {
      case ADMIN_OPC.CREATE_CQ: {
        const cq = c.cqs[qid];
        if (cq) this.createCq(cq);
        return done;
      }
      case ADMIN_OPC.CREATE_SQ: {
        const sq = c.sqs[qid];
        if (sq) this.createSq(sq);
        return done;
      }
      case ADMIN_OPC.DELETE_SQ:
        return this.deleteSq(qid).then(() => done);
      case ADMIN_OPC.DELETE_CQ:
        this.deleteCq(qid);
        return done;
      default:
        return done;
    }
  }

  /** Stops fetching in every worker and waits until nothing runs there (quiesce). */
  pause(): Promise<void> {
    return this.request('all', (seq) => ({ type: 'pause', seq }));
  }

  resume(): void {
    this.refreshIrqMode();
    for (let w = 0; w < this.slots.length; w++) this.post(w, { type: 'resume' });
  }

  /** Controller reset: every worker drops its queues once its running commands finished. */
  async reset(): Promise<void> {
    await this.request('all', (seq) => ({ type: 'reset', seq }));
    for (let q = 1; q < this.doorbells.owners.length; q++) this.doorbells.assign(q, -1);
  }

  /** True while some worker has an interrupt-enabled CQ with unconsumed entries (the INTx level). */
  get intxWanted(): boolean {
    return this.slots.some((s) => s.intx);
  }

  /** Each worker's counters (read from shared memory, current as of its last pass). */
  workerStats(): IoWorkerStats[] {
    return this.slots.map((_, w) => readStats(this.statsBuffer, w));
  }

  /** The workers' counters summed (highestWindowedIova: the maximum). */
  totals(): IoWorkerStats {
    const all = this.workerStats();
    const out = {} as IoWorkerStats;
    for (const k of STAT_FIELDS) {
      out[k] = k === 'highestWindowedIova' ? Math.max(-1, ...all.map((s) => s[k])) : all.reduce((n, s) => n + s[k], 0);
    }
    return out;
  }

  /** Stops every worker (their mappings and fds go with them). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.stopWatching();
    for (const w of this.waiting.values()) w();
    this.waiting.clear();
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
