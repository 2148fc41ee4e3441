import { native, type PollerHandle } from '../native/binding.js';
import { IrqIndex } from '../protocol/constants.js';
import { ClientError, ClientErrorCode } from './errors.js';

/** An interrupt type by name. */
export type IrqTypeName = 'intx' | 'msi' | 'msix' | 'err' | 'req';
/** An interrupt type by name or by VFIO index (0 INTx .. 4 REQ). */
export type IrqTypeLike = IrqTypeName | number;

const NAMES: IrqTypeName[] = ['intx', 'msi', 'msix', 'err', 'req'];
const BY_NAME: Record<IrqTypeName, number> = { intx: IrqIndex.INTX, msi: IrqIndex.MSI, msix: IrqIndex.MSIX, err: IrqIndex.ERR, req: IrqIndex.REQ };

/** The VFIO interrupt index of a type name (an index passes through); a ClientError (INVALID_ARG) for anything else. */
export function irqIndexOf(t: IrqTypeLike): number {
  if (typeof t === 'number') {
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) throw new ClientError(ClientErrorCode.INVALID_ARG, `bad IRQ index ${t}`);
    return t;
  }
  const i = BY_NAME[t];
  if (i === undefined) throw new ClientError(ClientErrorCode.INVALID_ARG, `unknown IRQ type ${String(t)}`);
  return i;
}

/** The type name of an interrupt index, or `irq<N>` for one without a name. */
export function irqTypeName(index: number): string {
  return NAMES[index] ?? `irq${index}`;
}

/** What the 'irq' event carries. */
export interface IrqEvent {
  /** VFIO IRQ index (0 INTx, 1 MSI, 2 MSI-X, 3 ERR, 4 REQ). */
  index: number;
  /** Type name (`intx`, `msi`, `msix`, `err`, `req`). */
  type: string;
  /** Vector within the index. */
  vector: number;
  /** Signals since the last report (the eventfd counter). */
  count: number;
  /** 'eventfd', or the name of whatever delivered it (e.g. 'message'). */
  via: string;
}

interface Watch {
  fd: number;
  poller: PollerHandle;
}

interface Waiter {
  resolve: (n: number) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

const key = (index: number, vector: number): string => `${index}:${vector}`;

/**
 * The client's interrupt eventfds: created non-blocking, watched with a
 * Poller; signals accumulate per vector until waitFor() takes them.
 */
export class IrqWatcher {
  private readonly watches = new Map<string, Watch>();
  private readonly counts = new Map<string, number>();
  private readonly waiters = new Map<string, Waiter[]>();
  private closed = false;

  constructor(private readonly onIrq: (e: IrqEvent) => void) {}

  /** Creates `count` eventfds for vectors start..start+count-1 (not yet watched). */
  create(count: number): number[] {
    const fds: number[] = [];
    try {
      for (let i = 0; i < count; i++) fds.push(native.eventfd(0, native.EFD_NONBLOCK));
    } catch (e) {
      for (const fd of fds) native.close(fd);
      throw e;
    }
    return fds;
  }

  /** Vectors that have an eventfd watched, as [index, vector] pairs. */
  watched(): [number, number][] {
    return [...this.watches.keys()].map((k) => k.split(':').map(Number) as [number, number]);
  }

  /** Starts watching `fds` for vectors from `start` (replacing what was there). */
  watch(index: number, start: number, fds: readonly number[]): void {
    fds.forEach((fd, j) => {
      const vector = start + j;
      this.unwatch(index, vector);
      const poller = new native.Poller(fd, (status) => {
        if (status < 0) return;
        this.drain(index, vector, fd);
      });
      poller.start(native.READABLE);
      this.watches.set(key(index, vector), { fd, poller });
    });
  }

  private drain(index: number, vector: number, fd: number): void {
    let total = 0;
    for (;;) {
      let v: bigint;
      try {
        v = native.eventfdRead(fd);
      } catch {
        break;
      }
      if (v < 0n) break;
      total += Number(v);
    }
    if (total > 0) this.signal(index, vector, total, 'eventfd');
  }

  /** Records `count` signals of a vector (from an eventfd or any other delivery). */
  signal(index: number, vector: number, count: number, via: string): void {
    if (this.closed) return;
    const k = key(index, vector);
    this.onIrq({ index, type: irqTypeName(index), vector, count, via });
    const list = this.waiters.get(k);
    const w = list?.shift();
    if (list && list.length === 0) this.waiters.delete(k);
    if (w) {
      if (w.timer) clearTimeout(w.timer);
      w.resolve(count + (this.counts.get(k) ?? 0));
      this.counts.delete(k);
      return;
    }
    this.counts.set(k, (this.counts.get(k) ?? 0) + count);
  }

  /**
   * Resolves with the number of signals of the vector since they were last
   * taken: at once if some are pending, else at the next one.
   */
  waitFor(index: number, vector: number, timeoutMs: number): Promise<number> {
    if (this.closed) return Promise.reject(new ClientError(ClientErrorCode.CLOSED, 'client is closed'));
    const k = key(index, vector);
    const have = this.counts.get(k) ?? 0;
    if (have > 0) {
      this.counts.delete(k);
      return Promise.resolve(have);
    }
    return new Promise<number>((resolve, reject) => {
      const w: Waiter = { resolve, reject, timer: null };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        w.timer = setTimeout(() => {
          const list = this.waiters.get(k);
          const i = list?.indexOf(w) ?? -1;
          if (list && i >= 0) list.splice(i, 1);
          if (list && list.length === 0) this.waiters.delete(k);
          reject(new ClientError(ClientErrorCode.IRQ_TIMEOUT, `no ${irqTypeName(index)} interrupt on vector ${vector} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      const list = this.waiters.get(k);
      if (list) list.push(w);
      else this.waiters.set(k, [w]);
    });
  }

  /** Signals pending for a vector (not taken yet). */
  pending(index: number, vector: number): number {
    return this.counts.get(key(index, vector)) ?? 0;
  }

  /** The eventfd of a vector, or -1. */
  fdOf(index: number, vector: number): number {
    return this.watches.get(key(index, vector))?.fd ?? -1;
  }

  unwatch(index: number, vector: number): void {
    const k = key(index, vector);
    const w = this.watches.get(k);
    if (!w) return;
    this.watches.delete(k);
    w.poller.close();
    native.close(w.fd);
  }

  /** Stops and closes every eventfd of a type. */
  unwatchIndex(index: number): void {
    for (const k of [...this.watches.keys()]) {
      const [i, v] = k.split(':').map(Number) as [number, number];
      if (i === index) this.unwatch(i, v);
    }
  }

  close(): void {
    if (this.closed) return;
    for (const k of [...this.watches.keys()]) {
      const [i, v] = k.split(':').map(Number) as [number, number];
      this.unwatch(i, v);
    }
    this.closed = true;
    const err = new ClientError(ClientErrorCode.CLOSED, 'client closed while waiting for an interrupt');
    for (const list of this.waiters.values()) {
      for (const w of list) {
        if (w.timer) clearTimeout(w.timer);
        w.reject(err);
      }
    }
    this.waiters.clear();
    this.counts.clear();
  }
}
