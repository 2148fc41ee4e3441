// Interrupts raised from worker threads. A worker writes the client's eventfd
// itself when nothing stands between the trigger and the fd (the vector is
// unmasked, Bus Master is on, the device runs, the client wants no interrupt
// messages, the eventfd is non-blocking); anything else goes to the thread
// that owns the device context, whose trigger() applies masks, pending bits
// and gating as always (and whose writer thread owns blocking eventfds).
//
// The fd a worker writes is its own dup of the client's eventfd, handed over
// with a generation number: SET_IRQS may replace or close the client's fd at
// any time, and the worker must never write a number that now names another
// file. The context thread publishes, per vector, `generation << 1 | direct`
// in a SharedArrayBuffer; a worker uses its dup only while its generation is
// the published one and the direct bit is set. A dup is closed by the context
// thread once the worker reported it stopped using it (or the worker is gone).
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { native } from '../native/binding.js';
import { IrqIndex } from '../protocol/constants.js';
import { IRQ_TYPE_INDEX, type IrqType, type TriggerResult } from './irqs.js';

/** Interrupt types a worker may raise directly (edge-triggered messages). */
const DIRECT_INDEXES = [IrqIndex.MSI, IrqIndex.MSIX] as const;

type ToWorker =
  | { type: 'setup'; state: SharedArrayBuffer; counts: number[] }
  | { type: 'fd'; index: number; vector: number; fd: number; generation: number };
type ToMain = { type: 'trigger'; index: number; vector: number } | { type: 'dropped'; fd: number };

/** What the context offers the interrupt channel (kept minimal to avoid a cycle). */
export interface IrqWorkerHostContext {
  /** Vectors per interrupt index. */
  irqCount(index: number): number;
  /** The eventfd a trigger of (index, vector) would just write now, with no other effect; -1 otherwise. */
  directEventfd(index: number, vector: number): number;
  /** Counts replacements of the client's fd for (index, vector). */
  irqFdGeneration(index: number, vector: number): number;
  /** The full trigger path (masks, pending bits, gating). */
  trigger(type: IrqType, vector: number): TriggerResult;
  /** Registers a refresh to run after every change of interrupt state; returns its removal. */
  addIrqStateListener(fn: () => void): () => void;
}

/** Slot of (index, vector) in the shared state: MSI vectors first, then MSI-X. */
function slotOf(counts: readonly number[], index: number, vector: number): number {
  return index === IrqIndex.MSI ? vector : counts[IrqIndex.MSI]! + vector;
}

/**
 * Context side of one worker's interrupt channel. Transfer the port to the
 * worker and call connectWorkerIrq(port) there.
 */
export function createIrqWorkerPort(ctx: IrqWorkerHostContext): MessagePort {
  const { port1, port2 } = new MessageChannel();
  const counts = [0, ctx.irqCount(IrqIndex.MSI), ctx.irqCount(IrqIndex.MSIX)];
  const total = counts[IrqIndex.MSI]! + counts[IrqIndex.MSIX]!;
  const sab = new SharedArrayBuffer(Math.max(1, total) * 4);
  const state = new Int32Array(sab);
  /** Per slot: the generation and dup handed to the worker (-1: none). */
  const given: { generation: number; fd: number }[] = Array.from({ length: total }, () => ({ generation: -1, fd: -1 }));
  /** Dups the worker may still hold: closed when it reports them dropped, or when it goes. */
  const outstanding = new Set<number>();
  let open = true;
  port1.postMessage({ type: 'setup', state: sab, counts } satisfies ToWorker);

  const refresh = (): void => {
    if (!open) return;
    for (const index of DIRECT_INDEXES) {
      for (let v = 0; v < counts[index]!; v++) {
        const slot = slotOf(counts, index, v);
        const fd = ctx.directEventfd(index, v);
        const generation = ctx.irqFdGeneration(index, v) & 0x3fffffff;
        const g = given[slot]!;
        if (fd >= 0 && g.generation !== generation) {
          // A new fd behind this vector: clear the direct bit first, so the
          // worker forwards until its dup of the new fd has arrived.
          Atomics.store(state, slot, generation << 1);
          let dup = -1;
          try {
            dup = native.dup(fd);
          } catch {
            // out of fds: the worker forwards every trigger of this vector
          }
          if (dup >= 0) outstanding.add(dup);
          g.generation = generation;
          g.fd = dup;
          port1.postMessage({ type: 'fd', index, vector: v, fd: dup, generation } satisfies ToWorker);
        }
        Atomics.store(state, slot, (generation << 1) | (fd >= 0 && g.fd >= 0 && g.generation === generation ? 1 : 0));
      }
    }
  };
  const removeListener = ctx.addIrqStateListener(refresh);
  refresh();

  port1.on('message', (m: ToMain) => {
    if (m.type === 'trigger') {
      const type = m.index === IrqIndex.MSI ? 'msi' : m.index === IrqIndex.MSIX ? 'msix' : 'intx';
      ctx.trigger(type, m.vector);
    } else if (m.type === 'dropped' && outstanding.delete(m.fd)) {
      native.close(m.fd);
    }
  });
  port1.on('close', () => {
    open = false;
    removeListener();
    for (const fd of outstanding) native.close(fd);
    outstanding.clear();
  });
  port1.unref();
  return port2;
}

/** What happened to a trigger raised from a worker. */
export type WorkerTriggerResult =
  /** The worker wrote the client's eventfd itself. */
  | 'delivered'
  /** Sent to the context's thread, which applies masks, pending bits and gating. */
  | 'forwarded';

/** Counters of a worker's interrupt channel. */
export interface WorkerIrqStats {
  delivered: number;
  forwarded: number;
}

/** A worker's interrupt API: trigger() as on the context, delivered from this thread when possible. */
export class WorkerIrq {
  readonly stats: WorkerIrqStats = { delivered: 0, forwarded: 0 };
  private state: Int32Array | null = null;
  private counts: number[] = [0, 0, 0];
  /** Per slot: this worker's dup of the client's fd and its generation. */
  private fds: { fd: number; generation: number }[] = [];

  constructor(private readonly port: MessagePort) {
    port.on('message', (m: ToWorker) => this.onMessage(m));
  }

  private onMessage(m: ToWorker): void {
    if (m.type === 'setup') {
      this.state = new Int32Array(m.state);
      this.counts = m.counts;
      this.fds = Array.from({ length: this.state.length }, () => ({ fd: -1, generation: -1 }));
      return;
    }
    const slot = slotOf(this.counts, m.index, m.vector);
    const cur = this.fds[slot];
    if (!cur) return;
    const old = cur.fd;
    cur.fd = m.fd;
    cur.generation = m.generation;
    if (old >= 0) this.port.postMessage({ type: 'dropped', fd: old } satisfies ToMain);
  }

  /** Raises a vector: straight to the client's eventfd when nothing gates it, else through the context's thread. */
  trigger(type: IrqType, vector = 0): WorkerTriggerResult {
    if (this.tryDirect(type, vector)) return 'delivered';
    this.port.postMessage({ type: 'trigger', index: IRQ_TYPE_INDEX[type], vector } satisfies ToMain);
    this.stats.forwarded++;
    return 'forwarded';
  }

  /**
   * Writes the client's eventfd for (type, vector) from this thread if
   * nothing gates it now; false otherwise, with nothing sent (the caller
   * decides what the context's thread should do instead).
   */
  tryDirect(type: IrqType, vector = 0): boolean {
    const index = IRQ_TYPE_INDEX[type];
    if (!this.state || (index !== IrqIndex.MSI && index !== IrqIndex.MSIX) || vector < 0 || vector >= this.counts[index]!) return false;
    const slot = slotOf(this.counts, index, vector);
    const w = Atomics.load(this.state, slot);
    const mine = this.fds[slot]!;
    if (!(w & 1) || w >>> 1 !== mine.generation || mine.fd < 0) return false;
    try {
      // One non-blocking write (only non-blocking eventfds are direct);
      // a full counter means the client has yet to read it: signalled.
      native.eventfdSignal(mine.fd);
    } catch {
      return false;
    }
    this.stats.delivered++;
    return true;
  }

  /** Stops using the channel; the context's thread closes the dups. */
  close(): void {
    for (const f of this.fds) if (f.fd >= 0) this.port.postMessage({ type: 'dropped', fd: f.fd } satisfies ToMain);
    this.fds = [];
    this.state = null;
    this.port.close();
  }
}

/** Worker side: wraps the port the context created with irqWorkerPort(). */
export function connectWorkerIrq(port: MessagePort): WorkerIrq {
  return new WorkerIrq(port);
}
