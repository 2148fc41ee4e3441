import { native, type PollerHandle } from '../native/binding.js';
import { isEventFd } from '../native/fds.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import { IrqIndex, IrqInfoFlags, NUM_IRQS, SetIrqsFlags } from '../protocol/constants.js';
import { classifySetIrqs, validateSetIrqs, type SetIrqsRequest } from '../protocol/set-irqs.js';
import type { Logger } from '../util/logger.js';

/** Vectors per interrupt type. ERR and REQ default to 1 like libvfio-user. */
export interface IrqCounts {
  /** INTx lines: 0 or 1 (sets Interrupt Pin to INTA#). */
  intx?: number;
  /** MSI vectors. */
  msi?: number;
  /** MSI-X vectors. */
  msix?: number;
  /** AER error notification (0 or 1). */
  err?: number;
  /** Device release request (0 or 1). */
  req?: number;
}

/** An interrupt type by name. */
export type IrqType = 'intx' | 'msi' | 'msix' | 'err' | 'req';
export const IRQ_TYPE_INDEX: Record<IrqType, number> = { intx: 0, msi: 1, msix: 2, err: 3, req: 4 };
const INDEX_NAME: IrqType[] = ['intx', 'msi', 'msix', 'err', 'req'];

/**
 * What happened to one trigger: 'delivered', or why not. Every value but
 * 'delivered' and 'masked' means the interrupt is lost; the device's logger
 * warns once per vector and reason (per client) when that happens.
 */
export type TriggerResult =
  /** The client's eventfd was signalled (or the message extension sent). */
  | 'delivered'
  /** Masked (SET_IRQS MASK, the MSI-X vector or function mask, INTx auto-mask): held pending, delivered on unmask. */
  | 'masked'
  /** The client gave no eventfd for the vector (and takes no interrupt messages); as on hardware with the vector unprogrammed. */
  | 'no-eventfd'
  /** MSI or MSI-X while the guest has Bus Master Enable clear in the Command register (ServerOptions.requireBusMaster). */
  | 'bus-master-off'
  /** INTx while the guest has INTx Disable set in the Command register. */
  | 'intx-disabled'
  /** MSI while the guest has the MSI capability's Enable bit clear (once the client wrote that capability). */
  | 'msi-disabled'
  /** MSI-X while the guest has the MSI-X Enable bit clear (once the client wrote the MSI-X Message Control). */
  | 'msix-disabled'
  /** The device is stopped by migration (STOP, STOP_COPY, RESUMING, ERROR): it must raise no interrupts. */
  | 'device-stopped';

/** Why a trigger was refused before it reached the vector's eventfd. */
export type TriggerGate = 'bus-master-off' | 'intx-disabled' | 'msi-disabled' | 'msix-disabled' | 'device-stopped';

/** What the warning says for each lost-interrupt result. */
const NOT_DELIVERED: Record<Exclude<TriggerResult, 'delivered' | 'masked'>, string> = {
  'no-eventfd': 'the client gave no eventfd for it',
  'bus-master-off': 'the guest has Bus Master Enable off in the Command register',
  'intx-disabled': 'the guest has INTx Disable set in the Command register',
  'msi-disabled': "the guest has MSI disabled in the device's MSI capability",
  'msix-disabled': "the guest has MSI-X disabled in the device's MSI-X capability",
  'device-stopped': 'the device is stopped by migration',
};

interface IndexState {
  count: number;
  fds: number[];
  /**
   * Per vector: for a blocking eventfd, the writer thread's dup of it (its
   * writes must never block this thread); -1 for a non-blocking one, which
   * is signalled here with a single write().
   */
  deferred: number[];
  /** Bumped whenever fds[v] is replaced, so holders of a dup can tell it is stale. */
  fdGen: number[];
  masked: boolean[];
  pending: boolean[];
  /** Client-supplied eventfds whose signal means mask / unmask (QEMU's resample fd). */
  maskFd: Map<number, { fd: number; poller: PollerHandle }>;
  unmaskFd: Map<number, { fd: number; poller: PollerHandle }>;
}

export interface IrqHooks {
  /** Why this interrupt may not be signalled now (command register, capability enables, migration state); null if it may. */
  gate(index: number, vector: number): TriggerGate | null;
  /** Called after every mask change, so the device can react (libvfio-user's irq-state callback). */
  onMaskChange?(index: number, start: number, count: number, masked: boolean): void;
  /** Called after any change of fds, masks or pending state (worker interrupt channels refresh on it). */
  onChange?(): void;
  /** Also deliver by message (our extension, for clients that asked for it). Return true if sent. */
  message?(index: number, vector: number): boolean;
}

/**
 * Interrupt state of one device: the client's eventfds per type and vector,
 * masks and pending bits, and INTx's level. SET_IRQS lands here; the device
 * raises interrupts through trigger() / assertIntx().
 */
export class IrqTable {
  private readonly idx: IndexState[];
  private intxLevel = false;
  /** Vector-and-reason pairs already warned about for the current client. */
  private readonly warned = new Set<string>();

  constructor(counts: IrqCounts, private readonly hooks: IrqHooks, private readonly log: Logger) {
    const n = [counts.intx ?? 0, counts.msi ?? 0, counts.msix ?? 0, counts.err ?? 1, counts.req ?? 1];
    this.idx = n.map((count) => ({
      count,
      fds: new Array<number>(count).fill(-1),
      deferred: new Array<number>(count).fill(-1),
      fdGen: new Array<number>(count).fill(0),
      masked: new Array<boolean>(count).fill(false),
      pending: new Array<boolean>(count).fill(false),
      maskFd: new Map(),
      unmaskFd: new Map(),
    }));
  }

  get counts(): number[] {
    return this.idx.map((s) => s.count);
  }

  /** GET_IRQ_INFO flags. INTx is maskable and auto-masked like vfio-pci's; every type honours MASK/UNMASK. */
  infoFlags(index: number): number {
    if (index === IrqIndex.INTX) return IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.AUTOMASKED;
    if (index === IrqIndex.MSI || index === IrqIndex.MSIX) return IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.NORESIZE;
    return IrqInfoFlags.EVENTFD;
  }

  count(index: number): number {
    return this.idx[index]?.count ?? 0;
  }

  hasFd(index: number, vector: number): boolean {
    return (this.idx[index]?.fds[vector] ?? -1) >= 0;
  }

  /** How many times the fd of (index, vector) was replaced. */
  fdGeneration(index: number, vector: number): number {
    return this.idx[index]?.fdGen[vector] ?? 0;
  }

  /**
   * The fd a trigger would write right now with one non-blocking write()
   * (unmasked, a non-blocking eventfd), else -1: blocking eventfds are only
   * written by the addon's writer thread. Gating by the device is the caller's.
   */
  directFd(index: number, vector: number): number {
    const s = this.idx[index];
    if (!s || s.masked[vector] || (s.deferred[vector] ?? -1) >= 0) return -1;
    return s.fds[vector] ?? -1;
  }

  isMasked(index: number, vector: number): boolean {
    return this.idx[index]?.masked[vector] ?? false;
  }

  isPending(index: number, vector: number): boolean {
    return this.idx[index]?.pending[vector] ?? false;
  }

  /**
   * Applies a SET_IRQS request. Takes ownership of `fds`: every fd is either
   * kept or closed, also when the request is refused (ProtocolError).
   */
  setIrqs(req: SetIrqsRequest, fds: number[]): void {
    let kept = false;
    try {
      validateSetIrqs(req, this.counts, fds.length);
      const s = this.idx[req.index]!;
      const op = classifySetIrqs(req, fds.length);
      const { start, count } = req;
      switch (op) {
        case 'disable-all':
          for (let v = 0; v < s.count; v++) this.setFd(s, v, -1);
          for (const m of [s.maskFd, s.unmaskFd]) for (const v of [...m.keys()]) this.dropWatch(m, v);
          s.masked.fill(false);
          s.pending.fill(false);
          break;
        case 'assign-eventfds':
          checkEventFds(fds);
          for (let j = 0; j < count; j++) this.setFd(s, start + j, fds[j]!);
          kept = true;
          // A vector that was raised while nobody listened is not replayed:
          // only masked-pending vectors are.
          break;
        case 'deassign-eventfds':
          for (let j = 0; j < count; j++) this.setFd(s, start + j, -1);
          break;
        case 'trigger':
          for (let j = 0; j < count; j++) {
            if (req.flags & SetIrqsFlags.DATA_BOOL && req.data && req.data[j] === 0) continue;
            this.loopback(req.index, start + j);
          }
          break;
        case 'mask':
        case 'unmask': {
          const masked = op === 'mask';
          for (let j = 0; j < count; j++) {
            if (req.flags & SetIrqsFlags.DATA_BOOL && req.data && req.data[j] === 0) continue;
            this.setMask(req.index, start + j, masked);
          }
          this.hooks.onMaskChange?.(req.index, start, count, masked);
          break;
        }
        case 'mask-eventfd':
        case 'unmask-eventfd': {
          const map = op === 'mask-eventfd' ? s.maskFd : s.unmaskFd;
          checkEventFds(fds);
          for (let j = 0; j < count; j++) {
            this.dropWatch(map, start + j);
            const fd = fds[j];
            if (fd === undefined) continue;
            this.watch(map, req.index, start + j, fd, op === 'mask-eventfd');
          }
          kept = fds.length > 0;
          break;
        }
      }
    } finally {
      if (!kept) for (const fd of fds) safeClose(fd);
      this.hooks.onChange?.();
    }
  }

  private setFd(s: IndexState, v: number, fd: number): void {
    const old = s.fds[v]!;
    if (old === fd) return;
    if (old >= 0) safeClose(old);
    const d = s.deferred[v]!;
    if (d >= 0) native.eventfdDeferredClose(d);
    s.fdGen[v] = (s.fdGen[v]! + 1) & 0x3fffffff;
    s.fds[v] = fd;
    // The fd's mode is learnt once here, not on every interrupt.
    s.deferred[v] = fd >= 0 && !native.isNonBlocking(fd) ? native.eventfdDeferredOpen(fd) : -1;
  }

  /** Adds 1 to vector v's eventfd: one write, or queued for the writer thread if it is blocking. */
  private write(s: IndexState, v: number): void {
    const d = s.deferred[v]!;
    if (d >= 0) native.eventfdDeferredSignal(d);
    else native.eventfdSignal(s.fds[v]!);
  }

  private watch(map: IndexState['maskFd'], index: number, vector: number, fd: number, mask: boolean): void {
    const poller = new native.Poller(fd, (status) => {
      if (status < 0) return;
      if (native.eventfdRead(fd) < 0n) return;
      this.setMask(index, vector, mask);
      this.hooks.onMaskChange?.(index, vector, 1, mask);
      this.hooks.onChange?.();
    });
    poller.unref();
    poller.start(1);
    map.set(vector, { fd, poller });
  }

  private dropWatch(map: IndexState['maskFd'], vector: number): void {
    const w = map.get(vector);
    if (!w) return;
    w.poller.close();
    safeClose(w.fd);
    map.delete(vector);
  }

  /** Sets a vector's mask; unmasking delivers what was pending (and a still-asserted INTx). */
  setMask(index: number, vector: number, masked: boolean): void {
    const s = this.idx[index];
    if (!s || vector >= s.count) return;
    s.masked[vector] = masked;
    if (masked) return;
    const refire = s.pending[vector] || (index === IrqIndex.INTX && this.intxLevel);
    s.pending[vector] = false;
    if (refire) this.signal(index, vector);
  }

  /**
   * Raises vector `vector` of `index`. Masked vectors become pending; INTx
   * triggers behave like a pulse on the line (see assertIntx for level use).
   */
  trigger(index: number, vector = 0): TriggerResult {
    const s = this.idx[index];
    if (!s || vector < 0 || vector >= s.count) throw new RangeError(`no ${INDEX_NAME[index] ?? index} vector ${vector}`);
    const gate = this.hooks.gate(index, vector);
    if (gate) return this.notDelivered(index, vector, gate);
    if (s.masked[vector]) {
      s.pending[vector] = true;
      return 'masked';
    }
    return this.signal(index, vector);
  }

  /**
   * Reports a trigger that did not reach the client: the result, after a
   * warning the first time this vector is lost for this reason (a masked
   * vector is only held, so that is logged at debug level).
   */
  notDelivered(index: number, vector: number, result: Exclude<TriggerResult, 'delivered'>): TriggerResult {
    const name = `${INDEX_NAME[index] ?? `irq${index}`}[${vector}]`;
    if (result === 'masked') {
      this.log.debug(`interrupt ${name} masked: held pending until unmasked`);
      return result;
    }
    const key = `${index}:${vector}:${result}`;
    if (!this.warned.has(key)) {
      this.warned.add(key);
      this.log.warn(`interrupt ${name} not delivered (${result}): ${NOT_DELIVERED[result]}; further ones for this reason are not logged`);
    }
    return result;
  }

  private signal(index: number, vector: number): TriggerResult {
    const s = this.idx[index]!;
    const gate = this.hooks.gate(index, vector);
    if (gate) return this.notDelivered(index, vector, gate);
    const fd = s.fds[vector]!;
    const byMessage = this.hooks.message?.(index, vector) ?? false;
    if (fd < 0) return byMessage ? 'delivered' : this.notDelivered(index, vector, 'no-eventfd');
    try {
      this.write(s, vector);
    } catch (e) {
      this.log.warn(`interrupt ${INDEX_NAME[index]}[${vector}]: eventfd write failed: ${(e as Error).message}`);
      return byMessage ? 'delivered' : this.notDelivered(index, vector, 'no-eventfd');
    }
    // QEMU masks INTx itself when it sees the fd fire (it sends MASK, later
    // UNMASK after the guest's EOI); we mirror the auto-mask so a trigger in
    // between is held as pending, as vfio-pci does with AUTOMASKED.
    if (index === IrqIndex.INTX) {
      s.masked[vector] = true;
      this.hooks.onChange?.();
    }
    return 'delivered';
  }

  /**
   * The client's own trigger (SET_IRQS ACTION_TRIGGER with DATA_NONE or
   * DATA_BOOL): a loopback test of its delivery path. As vfio-pci does, the
   * fd is signalled whatever the masks, auto-masking, Bus Master, MSI enable
   * or migration state say, and no mask or pending bit changes: those gate
   * the interrupts the device raises, not this.
   */
  loopback(index: number, vector: number): TriggerResult {
    const s = this.idx[index];
    if (!s || vector < 0 || vector >= s.count) throw new RangeError(`no ${INDEX_NAME[index] ?? index} vector ${vector}`);
    const byMessage = this.hooks.message?.(index, vector) ?? false;
    const fd = s.fds[vector]!;
    if (fd < 0) return byMessage ? 'delivered' : 'no-eventfd';
    try {
      this.write(s, vector);
    } catch (e) {
      this.log.warn(`interrupt ${INDEX_NAME[index]}[${vector}] loopback: eventfd write failed: ${(e as Error).message}`);
      return byMessage ? 'delivered' : 'no-eventfd';
    }
    return 'delivered';
  }

  /** INTx level: the line stays asserted until deassertIntx(); each unmask re-fires it. */
  assertIntx(): TriggerResult {
    this.intxLevel = true;
    if (this.count(IrqIndex.INTX) === 0) throw new RangeError('device has no INTx');
    return this.trigger(IrqIndex.INTX, 0);
  }

  deassertIntx(): void {
    this.intxLevel = false;
    const s = this.idx[IrqIndex.INTX];
    if (s && s.count > 0) s.pending[0] = false;
  }

  get intxAsserted(): boolean {
    return this.intxLevel;
  }

  /** Pending vectors of an index (e.g. to serve an MSI-X PBA). */
  pendingVectors(index: number): number[] {
    const s = this.idx[index];
    return s ? s.pending.flatMap((p, v) => (p ? [v] : [])) : [];
  }

  /** Client gone: close every fd it gave us, forget masks and what was warned about. The INTx level (device state) stays. */
  dropClient(): void {
    this.warned.clear();
    for (let i = 0; i < NUM_IRQS; i++) {
      const s = this.idx[i]!;
      for (let v = 0; v < s.count; v++) this.setFd(s, v, -1);
      for (const m of [s.maskFd, s.unmaskFd]) for (const v of [...m.keys()]) this.dropWatch(m, v);
      s.masked.fill(false);
      s.pending.fill(false);
    }
    this.hooks.onChange?.();
  }
}

/**
 * Interrupt fds must be eventfds. We do not flip them to non-blocking: the
 * flag lives in the file description the client shares, and libvfio-user's
 * sample client reads its irqfd blocking. An eventfd write cannot block
 * short of a counter overflow; a pipe's could, so anything else is refused.
 */
function checkEventFds(fds: readonly number[]): void {
  for (const fd of fds) if (!isEventFd(fd)) throw new ProtocolError(Errno.EINVAL, `fd for an interrupt is not an eventfd`);
}

function safeClose(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // already closed
  }
}
