// The NVMe controller: BAR0 registers and doorbells, shadow doorbells
// (Doorbell Buffer Config, with EventIdx), controller enable / reset /
// shutdown, queue processing (in the doorbell's turn, or setImmediate), completion
// posting and interrupts (MSI-X per CQ with interrupt coalescing, INTx as a
// level), quiesce and the migration state stream.
//
// The per-command path allocates nothing: one Sqe is refilled for every
// entry, rings and data buffers are reached through GuestWindows, PRPs are
// walked by one PrpCursor, and completions are written in place.
import type { DeviceContext } from '../../src/server/context.js';
import type { MigrationStateName } from '../../src/server/device.js';
import type { Logger } from '../../src/util/logger.js';
import { executeAdmin } from './admin.js';
import { executeIo } from './io.js';
import type { Namespace } from './namespace.js';
import type { IoWorkerPool } from './workers/pool.js';
import { GuestWindows } from './guest-window.js';
import { SYNC_IO_MAX } from './io.js';
import { contextMem, PrpCursor, type GuestMem } from './prp.js';
import { CompletionQueue, NvmeStatus, Sqe, SubmissionQueue, type Completion, type CqState, type ShadowSlots, type SqState } from './queues.js';
import {
  CC,
  CSTS,
  capValue,
  DOORBELL_BASE,
  FEAT,
  LIMITS,
  NVME_VERSION,
  REG,
  SC,
  SHST_COMPLETE,
  SHST_OCCURRING,
  STATUS_DNR,
  u32,
} from './registers.js';

export interface FeatureState {
  arbitration: number;
  powerState: number;
  tempThreshold: number;
  errorRecovery: number;
  volatileWriteCache: number;
  irqCoalescing: number;
  writeAtomicity: number;
  asyncEventConfig: number;
  /** IV -> Interrupt Vector Configuration value (CD bit). */
  irqConfig: Record<number, number>;
}

const defaultFeatures = (): FeatureState => ({
  arbitration: 0,
  powerState: 0,
  tempThreshold: 0x157, // 343 K
  errorRecovery: 0,
  volatileWriteCache: 1,
  irqCoalescing: 0,
  writeAtomicity: 0,
  asyncEventConfig: 0,
  irqConfig: {},
});

export interface ControllerStats {
  /** Commands fetched, per queue type. */
  adminCommands: number;
  ioCommands: number;
  doorbells: number;
  interrupts: number;
  /** Interrupts the library did not deliver (masked and held, no eventfd, Bus Master off, MSI/MSI-X disabled, device stopped). */
  interruptsNotDelivered: number;
  errors: number;
  /** Completions that had to wait for room in a full CQ. */
  cqFullWaits: number;
  /** Interrupts held back by interrupt coalescing (fired later by threshold or time). */
  interruptsCoalesced: number;
  /** Doorbell Buffer Config commands accepted (shadow doorbells switched on). */
  doorbellBufferConfigs: number;
}

/** Shadow doorbell and EventIdx buffers (Doorbell Buffer Config), guest addresses of one page each. */
export interface DoorbellBuffers {
  dbs: number;
  eis: number;
}

/**
 * EventIdx the controller publishes for a CQ head while interrupts go by
 * message (MSI-X or MSI): outside
 * every [old, new) span a host can produce between wraps, so the host rings
 * the CQ head doorbell only when its head wraps to 0. The controller reads the
 * shadow head itself when it needs room.
 */
const CQ_EVENT_NEVER = 0xffff;

/** Migration stream contents (JSON, version 1). */
interface SavedState {
  v: 1;
  cc: number;
  csts: number;
  aqa: number;
  asq: string;
  acq: string;
  intms: number;
  features: FeatureState;
  granted: { sq: number; cq: number } | null;
  /** Absent in streams of controllers without shadow doorbells. */
  dbbuf?: DoorbellBuffers | null;
  sqs: SqState[];
  cqs: CqState[];
  aers: number[];
  events: number[];
  nsStats: Namespace['stats'];
}

/**
 * Passes over the SQs before the interrupt while the host keeps writing
 * shadow tails: commands it submitted while we executed the last ones
 * complete under the same interrupt.
 */
const REPASS_MAX = 4;
const isPromise = <T>(v: unknown): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';

export class NvmeController {
  ctx!: DeviceContext;
  /** Checked guest memory access through the library (admin commands, fallbacks). */
  mem!: GuestMem;
  /** Allocation-free guest memory access (rings, doorbell buffers, data). */
  win!: GuestWindows;
  prp!: PrpCursor;
  /** Reads and writes up to this many bytes go through synchronous file calls; larger ones through the thread pool. */
  syncIoMax = SYNC_IO_MAX;
  /** Shadow doorbell buffers while Doorbell Buffer Config is in effect. */
  dbbuf: DoorbellBuffers | null = null;
  /** The one entry every command is decoded into. */
  private readonly sqe = new Sqe();
  cc = 0;
  csts = 0;
  aqa = 0;
  asq = 0n;
  acq = 0n;
  intms = 0;
  readonly sqs: (SubmissionQueue | undefined)[] = new Array(LIMITS.maxIoQueues + 1);
  readonly cqs: (CompletionQueue | undefined)[] = new Array(LIMITS.maxIoQueues + 1);
  features = defaultFeatures();
  /** I/O queues granted by Set Features (Number of Queues), 1-based counts. */
  granted: { sq: number; cq: number } | null = null;
  /** Outstanding Asynchronous Event Request CIDs. */
  aers: number[] = [];
  /** Async events waiting for an AER (completion DW0 values). */
  events: number[] = [];
  /** With --io-workers: the threads that serve the I/O queues (this thread keeps the admin queue). */
  ioWorkers: IoWorkerPool | null = null;
  readonly stats: ControllerStats = { adminCommands: 0, ioCommands: 0, doorbells: 0, interrupts: 0, interruptsNotDelivered: 0, errors: 0, cqFullWaits: 0, interruptsCoalesced: 0, doorbellBufferConfigs: 0 };

  /** Migration: RUNNING or PRE_COPY. */
  private running = true;
  private quiesced = 0;
  private scheduled = false;
  /** Inside process(): a doorbell rung from a completion callback must not re-enter it. */
  private processing = false;
  private inflight = 0;
  private drainWaiters: (() => void)[] = [];
  /** Bumped on every controller reset: completions of older commands are dropped. */
  private generation = 0;
  private intxAsserted = false;
  /**
   * CQs that got entries since the last flushInterrupts (each once:
   * CompletionQueue.dirty), the first dirtyCount slots. A count rather than
   * `length = 0`, which would give the array's backing store back to be
   * allocated again by the next push.
   */
  private readonly dirty: CompletionQueue[] = [];
  private dirtyCount = 0;
  private readonly processNow = (): void => {
    this.scheduled = false;
    this.process();
  };
  private migIn: Uint8Array[] = [];
  private migOut: Uint8Array | null = null;
  private migPos = 0;

  constructor(
    readonly ns: Namespace,
    readonly identity: { serial: string; model: string; firmware: string; vendorId: number; subsystemVendorId: number },
    readonly log: Logger,
  ) {}

  attach(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.mem = contextMem(ctx);
    this.win = new GuestWindows(ctx);
    this.prp = new PrpCursor(this.win, this.mem);
  }

  get enabled(): boolean {
    return (this.cc & CC.EN) !== 0 && (this.csts & CSTS.RDY) !== 0;
  }

  // ---- registers -------------------------------------------------------

  private regImage(): Uint8Array {
    const b = new Uint8Array(0x40);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(REG.CAP, capValue(), true);
    dv.setUint32(REG.VS, NVME_VERSION, true);
    dv.setUint32(REG.INTMS, this.intms, true);
    dv.setUint32(REG.INTMC, this.intms, true);
    dv.setUint32(REG.CC, this.cc, true);
    dv.setUint32(REG.CSTS, this.csts, true);
    dv.setUint32(REG.AQA, this.aqa, true);
    dv.setBigUint64(REG.ASQ, this.asq, true);
    dv.setBigUint64(REG.ACQ, this.acq, true);
    return b;
  }

  /** BAR0 read (outside the MSI-X table/PBA, which the library serves). */
  read(offset: number, count: number): Uint8Array {
    const out = new Uint8Array(count);
    if (offset < 0x40) {
      const img = this.regImage();
      out.set(img.subarray(offset, Math.min(0x40, offset + count)));
    }
    return out; // reserved space and doorbells read as zero
  }

  /** BAR0 write; returns a promise when the write starts a reset or shutdown that must finish first. */
  write(offset: number, data: Uint8Array): void | Promise<void> {
    if (offset >= DOORBELL_BASE) {
      if (offset % 4 !== 0 || data.length < 4) {
        this.log.warn(`doorbell write ${offset}+${data.length} ignored (must be an aligned dword)`);
        return;
      }
      for (let i = 0; i + 4 <= data.length; i += 4) this.doorbell((offset + i - DOORBELL_BASE) >> 2, u32(data, i));
      return;
    }
    if (offset >= 0x40) return;
    // Merge into the register image dword by dword.
    const img = this.regImage();
    img.set(data.subarray(0, Math.max(0, Math.min(data.length, 0x40 - offset))), offset);
    const pending: Promise<void>[] = [];
    for (let dw = offset & ~3; dw < offset + data.length && dw < 0x40; dw += 4) {
      const r = this.setReg(dw, u32(img, dw));
      if (r) pending.push(r);
    }
    if (pending.length > 0) return Promise.all(pending).then(() => undefined);
  }

  private setReg(dw: number, v: number): void | Promise<void> {
    switch (dw) {
      case REG.INTMS:
        this.intms |= v;
        this.updateIntx();
        return;
      case REG.INTMC:
        this.intms &= ~v;
        this.updateIntx();
        return;
      case REG.CC:
        return this.writeCc(v);
      case REG.NSSR:
        if (v === 0x4e564d65) return this.controllerReset('NVM subsystem reset', true); // "NVMe"
        return;
      case REG.AQA:
        this.aqa = v & 0x0fff0fff;
        return;
      case REG.ASQ:
        this.asq = ((this.asq & 0xffffffff00000000n) | BigInt(v >>> 0)) & ~0xfffn;
        return;
      case REG.ASQ + 4:
        this.asq = (this.asq & 0xffffffffn) | (BigInt(v) << 32n);
        return;
      case REG.ACQ:
        this.acq = ((this.acq & 0xffffffff00000000n) | BigInt(v >>> 0)) & ~0xfffn;
        return;
      case REG.ACQ + 4:
        this.acq = (this.acq & 0xffffffffn) | (BigInt(v) << 32n);
        return;
      default:
        return; // read-only or reserved
    }
  }

  private writeCc(v: number): void | Promise<void> {
    const old = this.cc;
    this.cc = v >>> 0;
    const shn = (v >>> CC.shnShift) & 3;
    const oldShn = (old >>> CC.shnShift) & 3;
    if (!(old & CC.EN) && v & CC.EN) return this.enable();
    if (old & CC.EN && !(v & CC.EN)) return this.controllerReset('CC.EN cleared');
    if (shn !== 0 && oldShn === 0) return this.shutdown();
  }

  private enable(): void {
    const iosqes = (this.cc >>> CC.iosqesShift) & 0xf;
    const iocqes = (this.cc >>> CC.iocqesShift) & 0xf;
    const mps = (this.cc >>> CC.mpsShift) & 0xf;
    const css = (this.cc >>> CC.cssShift) & 0x7;
    const asqs = (this.aqa & 0xfff) + 1;
    const acqs = ((this.aqa >>> 16) & 0xfff) + 1;
    const problem =
      iosqes !== 6 ? `IOSQES ${iosqes}` :
      iocqes !== 4 ? `IOCQES ${iocqes}` :
      mps !== 0 ? `MPS ${mps} (only 4 KiB pages)` :
      css !== 0 ? `CSS ${css}` :
      asqs < 2 || acqs < 2 ? 'admin queue size' : null;
    if (problem) {
      this.log.warn(`enable refused: ${problem}; controller fatal status`);
      this.csts |= CSTS.CFS;
      return;
    }
    this.sqs[0] = new SubmissionQueue(0, Number(this.asq), asqs, 0);
    this.cqs[0] = new CompletionQueue(0, Number(this.acq), acqs, 0, true);
    this.csts = CSTS.RDY;
    this.log.info(`enabled: admin SQ ${asqs} @0x${this.asq.toString(16)}, CQ ${acqs} @0x${this.acq.toString(16)}`);
    this.schedule();
  }

  /** Controller reset: stop fetching, let running commands finish (their completions are dropped), clear queue state. */
  async controllerReset(why: string, full = false): Promise<void> {
    this.log.info(`controller reset (${why})`);
    this.generation++;
    this.csts &= ~CSTS.RDY;
    this.sqs.fill(undefined);
    this.cqs.fill(undefined);
    await this.drain();
    await this.ioWorkers?.reset();
    for (let i = 0; i < this.dirtyCount; i++) this.dirty[i]!.dirty = false;
    this.dirtyCount = 0;
    this.dbbuf = null;
    this.win.clear();
    this.aers = [];
    this.events = [];
    this.granted = null;
    this.features = defaultFeatures();
    this.setIntx(false);
    this.intms = 0;
    this.csts = 0;
    if (full) {
      this.cc = 0;
      this.aqa = 0;
      this.asq = 0n;
      this.acq = 0n;
    }
  }

  private async shutdown(): Promise<void> {
    this.log.info('shutdown notification');
    this.csts = (this.csts & ~(3 << CSTS.shstShift)) | (SHST_OCCURRING << CSTS.shstShift);
    await this.drain();
    try {
      await this.ns.flush();
    } catch (e) {
      this.log.error(`flush at shutdown failed: ${(e as Error).message}`);
    }
    this.csts = (this.csts & ~(3 << CSTS.shstShift)) | (SHST_COMPLETE << CSTS.shstShift);
  }

  private doorbell(index: number, value: number): void {
    this.stats.doorbells++;
    const qid = index >> 1;
    if (index & 1) {
      const cq = this.cqs[qid];
      if (!cq || value >= cq.size) {
        this.log.warn(`CQ ${qid} head doorbell ${value} ignored (${cq ? 'out of range' : 'no such queue'})`);
        return;
      }
      if (qid !== 0 && this.ioWorkers?.ring(index, value)) return;
      this.setCqHead(cq, value);
      return;
    }
    const sq = this.sqs[qid];
    if (!sq || value >= sq.size) {
      this.log.warn(`SQ ${qid} tail doorbell ${value} ignored (${sq ? 'out of range' : 'no such queue'})`);
      return;
    }
    if (qid !== 0 && this.ioWorkers?.ring(index, value)) return;
    sq.tail = value;
    // Posted doorbells need no reply: run the queue now, in the same turn
    // (no setImmediate hop; in the dedicated-thread mode the thread goes
    // straight back to recvmsg afterwards).
    if (!this.scheduled && !this.processing) this.process();
    else this.schedule();
  }

  /** The host's CQ head moved (doorbell or shadow): post what waited for room. */
  private setCqHead(cq: CompletionQueue, head: number): void {
    let posted: number;
    try {
      posted = cq.setHead(head, this.win, this.mem, this.sqs);
    } catch (e) {
      this.fatal(`CQ ${cq.id} unwritable: ${(e as Error).message}`);
      return;
    }
    if (posted > 0) {
      this.markDirty(cq);
      this.flushInterrupts();
    }
    if (cq.pending.length > 0) this.watchCqHead(cq);
    this.updateIntx();
  }

  // ---- shadow doorbells ----------------------------------------------------

  /** Doorbell Buffer Config: shadow doorbells and EventIdx for every I/O queue from now on (the admin queue keeps MMIO, as Linux expects). */
  configureDoorbellBuffers(dbs: number, eis: number): void {
    this.dbbuf = { dbs, eis };
    this.stats.doorbellBufferConfigs++;
    for (let qid = 1; qid < this.sqs.length; qid++) {
      const sq = this.sqs[qid];
      const cq = this.cqs[qid];
      if (sq) this.attachShadow(sq, qid, false);
      if (cq) this.attachShadow(cq, qid, true);
    }
    this.log.info(`shadow doorbells at 0x${dbs.toString(16)}, EventIdx at 0x${eis.toString(16)}`);
  }

  /** Points a queue at its shadow doorbell and EventIdx slots (if Doorbell Buffer Config is on) and publishes its current value. */
  attachShadow(q: SubmissionQueue | CompletionQueue, qid: number, isCq: boolean): void {
    if (!this.shadowSlots(q, qid, isCq)) return;
    if (q instanceof CompletionQueue) {
      this.win.store32(q.shadow, q.head);
      this.win.store32(q.eventIdx, this.cqEventIdx(q));
    } else {
      this.win.store32(q.shadow, q.tail);
      this.win.store32(q.eventIdx, q.tail);
    }
  }

  /** Sets a queue's slot addresses; false when shadow doorbells are off (or for the admin queue). */
  private shadowSlots(q: ShadowSlots, qid: number, isCq: boolean): boolean {
    const d = this.dbbuf;
    if (!d || qid === 0) return false;
    const off = qid * 8 + (isCq ? 4 : 0);
    q.shadow = d.dbs + off;
    q.eventIdx = d.eis + off;
    return true;
  }

  /** With interrupts by message the host's CQ head matters only for room; with INTx it drives the level, so every move rings. */
  private cqEventIdx(cq: CompletionQueue, mv = this.messageVectors()): number {
    return mv !== 0 && cq.pending.length === 0 ? CQ_EVENT_NEVER : cq.head;
  }

  /** Reads a queue's shadow doorbell; -1 (and a warning) when unreadable or out of range. */
  private readShadow(q: ShadowSlots & { id: number; size: number }, what: string): number {
    const v = this.win.load32(q.shadow);
    if (v < 0 || v >= q.size) {
      this.log.warn(`${what} ${q.id} shadow doorbell ${v} ignored (${v < 0 ? 'unreadable' : 'out of range'})`);
      return -1;
    }
    return v;
  }

  /** Picks up the host's CQ head from the shadow doorbell (no MMIO was rung for it). */
  private refreshCqHead(cq: CompletionQueue): void {
    if (cq.shadow < 0) return;
    const h = this.readShadow(cq, 'CQ');
    if (h >= 0 && h !== cq.head) this.setCqHead(cq, h);
  }

  /** A CQ waits for room: ask the host to ring the CQ head doorbell on its next update, then look once more (it may have moved meanwhile). */
  private watchCqHead(cq: CompletionQueue): void {
    if (cq.shadow < 0) return;
    this.win.store32(cq.eventIdx, cq.head);
    const h = this.readShadow(cq, 'CQ');
    if (h >= 0 && h !== cq.head) this.setCqHead(cq, h);
  }

    // ---- processing ------------------------------------------------------

  private get canRun(): boolean {
    // No client (it is going away, e.g. after migrating out): its memory is not ours to touch.
    return this.enabled && this.running && this.quiesced === 0 && this.ctx.connected;
  }

  /** Queue processing on a later turn of the event loop (after enable, a quiesce, or a burst that left work). */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.processNow);
  }

  private process(): void {
    if (!this.canRun) return;
    this.processing = true;
    try {
      this.processQueues();
    } finally {
      this.processing = false;
    }
  }

  private processQueues(): void {
    let more = false;
    const sqe = this.sqe;
    for (let pass = 0; pass < REPASS_MAX; pass++) {
      const again = this.processPass(sqe);
      if (again < 0) return; // controller fatal status: nothing more runs
      if (again === 0) break;
      if (again === 2 || pass === REPASS_MAX - 1) {
        more = true;
        break;
      }
    }
    this.flushInterrupts();
    if (more) this.schedule();
  }

  /**
   * One round-robin pass over the submission queues: 0 when every queue is
   * empty, 1 when the host wrote more shadow tails meanwhile (worth another
   * pass before the interrupt), 2 when a queue still holds work past its
   * burst, -1 after a fatal error.
   */
  private processPass(sqe: Sqe): number {
    let more = false;
    let again = false;
    for (let q = 0; q < this.sqs.length; q++) {
      const sq = this.sqs[q];
      if (!sq || sq.deleted) continue;
      if (sq.shadow >= 0) {
        const t = this.readShadow(sq, 'SQ');
        if (t >= 0) sq.tail = t;
      }
      // Round robin with a burst of at most 32 commands per queue per turn.
      for (let n = 0; n < 32 && !sq.empty && this.canRun; n++) {
        try {
          sq.fetch(this.win, this.mem, sqe);
        } catch (e) {
          this.fatal(`SQ ${sq.id} entry ${sq.head} unreadable: ${(e as Error).message}`);
          return -1;
        }
        this.execute(sq, sqe);
      }
      if (!sq.empty) more = true;
      else if (sq.shadow >= 0 && this.sqs[q] === sq) {
        // Idle: ask for an MMIO doorbell for anything after this tail, then
        // look again, since the host may have written the shadow before it saw
        // the new EventIdx (both sides order: write, full fence, read).
        this.win.store32(sq.eventIdx, sq.tail);
        const t = this.readShadow(sq, 'SQ');
        if (t >= 0 && t !== sq.tail) {
          sq.tail = t;
          again = true;
        }
      }
    }
    return more ? 2 : again ? 1 : 0;
  }

  private fatal(why: string): void {
    this.log.error(`controller fatal status: ${why}`);
    this.csts |= CSTS.CFS;
  }

  private execute(sq: SubmissionQueue, sqe: Sqe): void {
    if (sq.id === 0) this.stats.adminCommands++;
    else this.stats.ioCommands++;
    let r: Completion | Promise<Completion> | null;
    try {
      r = sq.id === 0 ? (this.ioWorkers ? this.ioWorkers.admin(this, sqe, executeAdmin) : executeAdmin(this, sqe)) : executeIo(this, sqe);
    } catch (e) {
      r = this.failure(e, sqe.opcode, sqe.cid);
    }
    if (r === null) return; // completes later by other means (AER)
    if (!isPromise<Completion>(r)) {
      this.complete(sq, sqe.cid, r.result, r.status);
      return;
    }
    // Asynchronous: the shared entry is refilled by the next fetch, so keep what the completion needs.
    const gen = this.generation;
    const cid = sqe.cid;
    const opcode = sqe.opcode;
    sq.inflight++;
    this.inflight++;
    r.then(
      (c) => this.finish(sq, cid, gen, c),
      (e: unknown) => this.finish(sq, cid, gen, this.failure(e, opcode, cid)),
    );
  }

  private finish(sq: SubmissionQueue, cid: number, gen: number, c: Completion): void {
    sq.inflight--;
    this.inflight--;
    if (gen === this.generation) {
      this.complete(sq, cid, c.result, c.status);
      this.flushInterrupts();
    }
    if (this.inflight === 0) for (const w of this.drainWaiters.splice(0)) w();
    if (sq.inflight === 0) sq.onIdle?.();
  }

  private failure(e: unknown, opcode: number, cid: number): Completion {
    this.stats.errors++;
    if (e instanceof NvmeStatus) {
      this.log.debug(`command 0x${opcode.toString(16)} cid ${cid}: ${e.message}`);
      return { result: 0, status: e.status };
    }
    this.log.error(`command 0x${opcode.toString(16)} cid ${cid} failed: ${(e as Error).stack ?? String(e)}`);
    return { result: 0, status: SC.INTERNAL | STATUS_DNR };
  }

  /** Posts a completion for a command of `sq` on its CQ. */
  complete(sq: SubmissionQueue, cid: number, result: number, status: number): void {
    const cq = this.cqs[sq.cqid];
    if (!cq) return;
    // Full as far as we know: the host may have moved its head in the shadow doorbell only.
    if (cq.full && cq.shadow >= 0) this.refreshCqHead(cq);
    try {
      if (!cq.post(this.win, this.mem, result, sq.id, cid, status, sq.head)) {
        this.stats.cqFullWaits++;
        this.watchCqHead(cq);
      }
    } catch (e) {
      this.fatal(`CQ ${cq.id} unwritable: ${(e as Error).message}`);
      return;
    }
    this.markDirty(cq);
  }

  private msixEnabled(): boolean {
    return this.ctx.config.msixEnabled;
  }

  private markDirty(cq: CompletionQueue): void {
    if (cq.dirty) return;
    cq.dirty = true;
    this.dirty[this.dirtyCount++] = cq;
  }

  /**
   * How completions are signalled now: -1 MSI-X, n > 0 MSI with n vectors
   * enabled, 0 INTx. MSI-X is checked first and without allocating.
   */
  private messageVectors(): number {
    if (this.msixEnabled()) return -1;
    const msi = this.ctx.config.msiState();
    return msi?.enabled ? msi.vectors : 0;
  }

  /** Raises the interrupt of every CQ that got entries, unless interrupt coalescing holds it back. */
  flushInterrupts(): void {
    const n = this.dirtyCount;
    if (n === 0) return;
    const mv = this.messageVectors();
    for (let i = 0; i < n; i++) {
      const cq = this.dirty[i]!;
      cq.dirty = false;
      if (cq.shadow >= 0) this.win.store32(cq.eventIdx, this.cqEventIdx(cq, mv));
      if (!cq.ien || cq.unsignalled === 0) continue;
      if (mv !== 0 && this.coalesce(cq)) continue;
      this.fire(cq, mv);
    }
    // Queues marked while flushing (none today) move down for the next flush.
    const extra = this.dirtyCount - n;
    for (let j = 0; j < extra; j++) this.dirty[j] = this.dirty[n + j]!;
    this.dirtyCount = extra;
    if (mv === 0) this.updateIntx();
  }

  /**
   * Interrupt Coalescing (feature 08h) on I/O CQs whose vector does not opt
   * out (feature 09h CD): the interrupt waits until THR + 1 entries are
   * unsignalled or TIME x 100 us passed since the first of them (a timer of
   * whole milliseconds). TIME 0 means no waiting.
   */
  private coalesce(cq: CompletionQueue): boolean {
    const v = this.features.irqCoalescing;
    if (v === 0 || cq.id === 0) return false;
    if ((this.features.irqConfig[cq.iv] ?? 0) & 0x10000) return false;
    const thr = (v & 0xff) + 1;
    const time = (v >>> 8) & 0xff;
    if (cq.unsignalled >= thr || time === 0) return false;
    this.stats.interruptsCoalesced++;
    if (!cq.coalesceTimer) {
      cq.coalesceTimer = setTimeout(() => {
        cq.coalesceTimer = null;
        if (this.cqs[cq.id] === cq && cq.unsignalled > 0 && this.enabled) this.fire(cq, this.messageVectors());
      }, Math.max(1, Math.ceil(time / 10)));
    }
    return true;
  }

  /** Signals a CQ's vector (`mv` as messageVectors(); MSI with fewer vectors enabled than CQ vectors in use aliases by the low bits). */
  private fire(cq: CompletionQueue, mv: number): void {
    if (cq.coalesceTimer) {
      clearTimeout(cq.coalesceTimer);
      cq.coalesceTimer = null;
    }
    cq.unsignalled = 0;
    this.stats.interrupts++;
    if (mv !== 0) {
      const r = mv < 0 ? this.ctx.irq.trigger('msix', cq.iv) : this.ctx.irq.trigger('msi', cq.iv & (mv - 1));
      if (r !== 'delivered') this.stats.interruptsNotDelivered++;
    }
  }

  /** INTx is a level: asserted while an interrupt-enabled CQ holds unconsumed entries and INTMS bit 0 is clear. */
  updateIntx(): void {
    if (!this.ctx) return;
    const messages = this.messageVectors() !== 0;
    let want = false;
    if (!messages && !(this.intms & 1)) {
      for (const cq of this.cqs) if (cq && cq.ien && cq.outstanding > 0) want = true;
      if (this.ioWorkers?.intxWanted) want = true;
    }
    this.setIntx(want);
  }

  private setIntx(on: boolean): void {
    if (on === this.intxAsserted || !this.ctx) return;
    this.intxAsserted = on;
    if (on) this.ctx.irq.assertIntx();
    else this.ctx.irq.deassertIntx();
  }

  /** Resolves when no command is executing. */
  drain(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Completes an outstanding AER with `dw0` (or queues the event). */
  asyncEvent(dw0: number): void {
    const cid = this.aers.shift();
    const admin = this.sqs[0];
    if (cid === undefined || !admin) {
      this.events.push(dw0);
      return;
    }
    this.complete(admin, cid, dw0, 0);
    this.flushInterrupts();
  }

  // ---- framework hooks ---------------------------------------------------

  /** DMA map/unmap, reset and migration wait for this: nothing executes or touches guest memory until the next turn. */
  async quiesce(): Promise<void> {
    this.quiesced++;
    try {
      await this.drain();
      await this.ioWorkers?.pause();
    } finally {
      // The library has no "resume" hook: the operation that asked for the
      // quiesce runs in the microtasks after this resolves, so resume on the
      // next macrotask.
      setImmediate(() => {
        this.quiesced--;
        if (this.quiesced === 0) this.ioWorkers?.resume();
        this.schedule();
      });
    }
  }

  async reset(reason: string): Promise<void> {
    await this.controllerReset(reason, true);
    this.setIntx(false);
  }

  migrationTransition(to: MigrationStateName, from: MigrationStateName): void {
    this.log.info(`migration ${from} -> ${to}`);
    this.running = to === 'RUNNING' || to === 'PRE_COPY';
    switch (to) {
      case 'STOP_COPY':
        this.migOut = new TextEncoder().encode(JSON.stringify(this.save()));
        this.migPos = 0;
        break;
      case 'RESUMING':
        this.migIn = [];
        break;
      case 'STOP':
        if (from === 'RESUMING') this.load();
        break;
      case 'RUNNING':
        // Interrupts for entries posted before the move (harmless if already seen), then the queued work.
        for (const cq of this.cqs) if (cq && cq.outstanding > 0) {
          cq.unsignalled = 1;
          this.markDirty(cq);
        }
        if (this.enabled) this.flushInterrupts();
        this.schedule();
        break;
      default:
        break;
    }
  }

  migrationRead(max: number): Uint8Array {
    if (!this.migOut) return new Uint8Array(0); // PRE_COPY: nothing to send early
    const n = Math.min(max, this.migOut.length - this.migPos);
    const out = this.migOut.slice(this.migPos, this.migPos + n);
    this.migPos += n;
    return out;
  }

  migrationWrite(data: Uint8Array): void {
    this.migIn.push(data.slice());
  }

  private save(): SavedState {
    return {
      v: 1,
      cc: this.cc,
      csts: this.csts,
      aqa: this.aqa,
      asq: this.asq.toString(),
      acq: this.acq.toString(),
      intms: this.intms,
      features: this.features,
      granted: this.granted,
      dbbuf: this.dbbuf,
      sqs: this.sqs.filter((q): q is SubmissionQueue => !!q).map((q) => q.save()),
      cqs: this.cqs.filter((q): q is CompletionQueue => !!q).map((q) => q.save()),
      aers: this.aers.slice(),
      events: this.events.slice(),
      nsStats: { ...this.ns.stats },
    };
  }

  private load(): void {
    const total = this.migIn.reduce((n, c) => n + c.length, 0);
    const all = new Uint8Array(total);
    let off = 0;
    for (const c of this.migIn) {
      all.set(c, off);
      off += c.length;
    }
    this.migIn = [];
    const s = JSON.parse(new TextDecoder().decode(all)) as SavedState;
    if (s.v !== 1) throw new Error(`unknown NVMe migration stream version ${String(s.v)}`);
    this.generation++;
    this.cc = s.cc;
    this.csts = s.csts;
    this.aqa = s.aqa;
    this.asq = BigInt(s.asq);
    this.acq = BigInt(s.acq);
    this.intms = s.intms;
    this.features = s.features;
    this.granted = s.granted;
    this.sqs.fill(undefined);
    this.cqs.fill(undefined);
    this.win.clear();
    this.dbbuf = s.dbbuf ?? null;
    // The shadow doorbells live in guest memory, which migrates with the guest: point at them, publish nothing.
    for (const q of s.sqs) this.shadowSlots((this.sqs[q.id] = SubmissionQueue.load(q)), q.id, false);
    for (const q of s.cqs) this.shadowSlots((this.cqs[q.id] = CompletionQueue.load(q)), q.id, true);
    this.aers = s.aers;
    this.events = s.events;
    Object.assign(this.ns.stats, s.nsStats);
    this.log.info(`restored controller: ${s.sqs.length} SQs, ${s.cqs.length} CQs, ${s.aers.length} AERs outstanding`);
  }

  /** Feature value Get Features reports (current). */
  getFeature(fid: number, cdw11: number): number {
    const f = this.features;
    switch (fid) {
      case FEAT.ARBITRATION: return f.arbitration;
      case FEAT.POWER_MGMT: return f.powerState;
      case FEAT.TEMP_THRESHOLD: return f.tempThreshold;
      case FEAT.ERROR_RECOVERY: return f.errorRecovery;
      case FEAT.VOLATILE_WC: return f.volatileWriteCache;
      case FEAT.NUM_QUEUES: {
        const g = this.granted ?? { sq: LIMITS.maxIoQueues, cq: LIMITS.maxIoQueues };
        return ((g.sq - 1) & 0xffff) | (((g.cq - 1) & 0xffff) << 16);
      }
      case FEAT.IRQ_COALESCE: return f.irqCoalescing;
      case FEAT.IRQ_CONFIG: {
        const iv = cdw11 & 0xffff;
        if (iv >= LIMITS.msixVectors) throw new NvmeStatus(SC.INVALID_FIELD, `vector ${iv}`);
        return f.irqConfig[iv] ?? iv;
      }
      case FEAT.WRITE_ATOMIC: return f.writeAtomicity;
      case FEAT.ASYNC_EVENT: return f.asyncEventConfig;
      default:
        throw new NvmeStatus(SC.INVALID_FIELD, `feature 0x${fid.toString(16)} not supported`);
    }
  }
}

