// One I/O worker thread of the NVMe sample: it serves the I/O queues the
// controller assigned to it (a CQ and every SQ that completes into it), with
// its own mapping of guest memory, its own file descriptor of the backing
// file, and interrupts it raises itself. The controller's thread keeps the
// registers, the admin queue and the queue registry; it tells this worker
// about queue creation and deletion, pauses it around DMA map changes and
// migration, and resets it with the controller.
import type { MessagePort } from 'node:worker_threads';
import type { WorkerDma } from '../../../src/server/dma-worker.js';
import type { WorkerIrq } from '../../../src/server/irq-worker.js';
import type { Logger } from '../../../src/util/logger.js';
import { NvmeStatus, type Completion } from '../queues.js';
import { SC, STATUS_DNR } from '../registers.js';
import type { WorkerBacking } from './backing.js';
import { executeWorkerIo, type IoTarget } from './commands.js';
import type { DoorbellHandoff } from './doorbells.js';
import { IRQ_MODE_MSIX, type FromIoWorker, type ToIoWorker } from './protocol.js';
import { WorkerCq, WorkerSq, type WorkerSqe } from './rings.js';
import { writeStats, type IoWorkerStats } from './stats.js';

const isPromise = <T>(v: unknown): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';
/** Commands taken from one SQ before the others get their turn. */
const BURST = 32;

/** What an IoWorker runs on. */
export interface IoWorkerDeps {
  index: number;
  backing: WorkerBacking;
  dma: WorkerDma;
  irq: WorkerIrq;
  doorbells: DoorbellHandoff;
  stats: SharedArrayBuffer;
  /** The controller's interrupt mode, kept current by its thread (protocol.ts). */
  irqMode: Int32Array;
  /** The controller's side (parentPort in a worker thread). */
  port: MessagePort;
}

export class IoWorker {
  private readonly sqs = new Map<number, WorkerSq>();
  private readonly cqs = new Map<number, WorkerCq>();
  /** CQ head values last seen per CQ id. */
  private readonly cqHeads = new Map<number, number>();
  private readonly dirty = new Set<WorkerCq>();
  private readonly io: IoTarget;
  private readonly log: Logger;
  private readonly counters: IoWorkerStats = {
    ioCommands: 0,
    errors: 0,
    interrupts: 0,
    interruptsDirect: 0,
    interruptsForwarded: 0,
    readCommands: 0,
    writeCommands: 0,
    blocksRead: 0,
    blocksWritten: 0,
    wakeups: 0,
    windowedRegions: 0,
    windowedAccesses: 0,
    highestWindowedIova: -1,
    revokedViews: 0,
  };
  private paused = false;
  private inflight = 0;
  private drainWaiters: (() => void)[] = [];
  private generation = 0;
  private scheduled = false;
  private intxWanted = false;
  private closed = false;

  constructor(private readonly deps: IoWorkerDeps) {
    this.io = { dma: deps.dma, backing: deps.backing };
    const send = (level: 'debug' | 'info' | 'warn' | 'error') => (message: string) =>
      this.send({ type: 'log', level, message: `io worker ${deps.index}: ${message}` });
    this.log = { debug: () => {}, info: send('info'), warn: send('warn'), error: send('error') };
    deps.port.on('message', (m: ToIoWorker) => void this.onMessage(m));
  }

  private send(m: FromIoWorker): void {
    this.deps.port.postMessage(m);
  }

  /** Serves doorbells until close(). */
  async run(): Promise<void> {
    const w = this.deps.index;
    const db = this.deps.doorbells;
    let seen = Atomics.load(db.wake, w);
    this.send({ type: 'ready' });
    while (!this.closed) {
      await db.waitForRing(w, seen);
      seen = Atomics.load(db.wake, w);
      this.counters.wakeups++;
      this.service();
    }
  }

  close(): void {
    this.closed = true;
    this.deps.doorbells.poke(this.deps.index);
  }

  private async onMessage(m: ToIoWorker): Promise<void> {
    switch (m.type) {
      case 'createCq':
        this.cqs.set(m.id, new WorkerCq(m.id, m.base, m.size, m.iv, m.ien));
        this.cqHeads.set(m.id, 0);
        return;
      case 'createSq':
        this.sqs.set(m.id, new WorkerSq(m.id, m.base, m.size, m.cqid));
        // Doorbells may have been rung before this message arrived.
        this.service();
        return;
      case 'deleteSq': {
        const sq = this.sqs.get(m.id);
        if (sq) {
          sq.deleted = true;
          if (sq.inflight > 0) await new Promise<void>((resolve) => (sq.onIdle = resolve));
          if (this.sqs.get(m.id) === sq) this.sqs.delete(m.id);
        }
        this.send({ type: 'done', seq: m.seq });
        return;
      }
      case 'deleteCq':
        this.cqs.delete(m.id);
        this.cqHeads.delete(m.id);
        this.updateIntx();
        return;
      case 'pause':
        this.paused = true;
        await this.drain();
        this.publishStats();
        this.send({ type: 'done', seq: m.seq });
        return;
      case 'resume':
        this.paused = false;
        this.service();
        return;
      case 'reset':
        this.generation++;
        this.sqs.clear();
        this.cqs.clear();
        this.cqHeads.clear();
        this.dirty.clear();
        await this.drain();
        this.updateIntx();
        this.publishStats();
        this.send({ type: 'done', seq: m.seq });
        return;
    }
  }

  private drain(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Reads this worker's doorbells and processes what they announce. */
  private service(): void {
    if (this.paused || this.closed) return;
    const values = this.deps.doorbells.values;
    for (const cq of this.cqs.values()) {
      const head = Atomics.load(values, 2 * cq.id + 1);
      if (head === this.cqHeads.get(cq.id)) continue;
      this.cqHeads.set(cq.id, head);
      if (head < 0 || head >= cq.size) {
        this.log.warn(`CQ ${cq.id} head doorbell ${head} ignored (out of range)`);
        continue;
      }
      let posted: number;
      try {
        posted = cq.setHead(head, this.deps.dma, (sqid) => this.sqs.get(sqid)?.head ?? 0);
      } catch (e) {
        this.fatal(`CQ ${cq.id} unwritable: ${(e as Error).message}`);
        return;
      }
      if (posted > 0) this.dirty.add(cq);
    }
    for (const sq of this.sqs.values()) {
      const tail = Atomics.load(values, 2 * sq.id);
      if (tail === sq.tail) continue;
      if (tail < 0 || tail >= sq.size) {
        this.log.warn(`SQ ${sq.id} tail doorbell ${tail} ignored (out of range)`);
        continue;
      }
      sq.tail = tail;
    }
    this.process();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.process();
    });
  }

  private process(): void {
    let more = false;
    for (const sq of this.sqs.values()) {
      if (sq.deleted) continue;
      for (let n = 0; n < BURST && !sq.empty && !this.paused; n++) {
        let sqe: WorkerSqe;
        try {
          sqe = sq.fetch(this.deps.dma);
        } catch (e) {
          this.fatal(`SQ ${sq.id} entry ${sq.head} unreadable: ${(e as Error).message}`);
          return;
        }
        this.execute(sq, sqe);
      }
      if (!sq.empty) more = true;
    }
    this.flushInterrupts();
    this.publishStats();
    if (more && !this.paused) this.schedule();
  }

  private execute(sq: WorkerSq, sqe: WorkerSqe): void {
    const gen = this.generation;
    this.counters.ioCommands++;
    let r: Completion | Promise<Completion>;
    try {
      r = executeWorkerIo(this.io, sqe);
    } catch (e) {
      r = this.failure(e, sqe);
    }
    if (!isPromise<Completion>(r)) {
      this.complete(sq, sqe.cid, r);
      return;
    }
    sq.inflight++;
    this.inflight++;
    r.then(
      (c) => this.finish(sq, sqe, gen, c),
      (e: unknown) => this.finish(sq, sqe, gen, this.failure(e, sqe)),
    );
  }

  private finish(sq: WorkerSq, sqe: WorkerSqe, gen: number, c: Completion): void {
    sq.inflight--;
    this.inflight--;
    if (gen === this.generation) {
      this.complete(sq, sqe.cid, c);
      this.flushInterrupts();
      this.publishStats();
    }
    if (this.inflight === 0) for (const w of this.drainWaiters.splice(0)) w();
    if (sq.inflight === 0) sq.onIdle?.();
  }

  private failure(e: unknown, sqe: WorkerSqe): Completion {
    this.counters.errors++;
    if (e instanceof NvmeStatus) return { result: 0, status: e.status };
    this.log.error(`command 0x${sqe.opcode.toString(16)} cid ${sqe.cid} failed: ${(e as Error).stack ?? String(e)}`);
    return { result: 0, status: SC.INTERNAL | STATUS_DNR };
  }

  private complete(sq: WorkerSq, cid: number, c: Completion): void {
    const cq = this.cqs.get(sq.cqid);
    if (!cq) return;
    try {
      cq.post(this.deps.dma, { result: c.result, sqid: sq.id, cid, status: c.status }, sq.head);
    } catch (e) {
      this.fatal(`CQ ${cq.id} unwritable: ${(e as Error).message}`);
      return;
    }
    this.dirty.add(cq);
  }

  /**
   * Raises the vector of every CQ that got entries: MSI-X or MSI straight to
   * the client's eventfd when nothing gates it, else by the controller's
   * thread (masks and pending bits, or INTx through updateIntx).
   */
  private flushInterrupts(): void {
    if (this.dirty.size > 0) {
      const mode = Atomics.load(this.deps.irqMode, 0);
      for (const cq of this.dirty) {
        if (!cq.ien || cq.unsignalled === 0) continue;
        cq.unsignalled = 0;
        this.counters.interrupts++;
        // MSI with fewer vectors than CQ vectors in use aliases by the low bits, as on the controller's thread.
        const direct =
          mode === IRQ_MODE_MSIX ? this.deps.irq.tryDirect('msix', cq.iv) : mode > 0 ? this.deps.irq.tryDirect('msi', cq.iv & (mode - 1)) : false;
        if (direct) this.counters.interruptsDirect++;
        else if (mode !== 0) {
          this.counters.interruptsForwarded++;
          this.send({ type: 'irq', iv: cq.iv });
        }
      }
      this.dirty.clear();
    }
    this.updateIntx();
  }

  /** Tells the controller when this worker's share of the INTx level changes. */
  private updateIntx(): void {
    let want = false;
    for (const cq of this.cqs.values()) if (cq.ien && cq.outstanding > 0) want = true;
    if (want === this.intxWanted) return;
    this.intxWanted = want;
    this.send({ type: 'intx', want });
  }

  private fatal(why: string): void {
    this.send({ type: 'fatal', message: `io worker ${this.deps.index}: ${why}` });
    this.paused = true;
  }

  private publishStats(): void {
    const c = this.counters;
    const ns = this.deps.backing.stats;
    const d = this.deps.dma.stats;
    c.readCommands = ns.readCommands;
    c.writeCommands = ns.writeCommands;
    c.blocksRead = ns.blocksRead;
    c.blocksWritten = ns.blocksWritten;
    c.windowedRegions = d.windowedRegions;
    c.windowedAccesses = d.windowedAccesses;
    c.highestWindowedIova = Number(d.highestWindowedIova);
    c.revokedViews = d.revokedViews;
    writeStats(this.deps.stats, this.deps.index, c);
  }
}
