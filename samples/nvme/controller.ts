// The NVMe controller: BAR0 registers and doorbells, controller enable /
// reset / shutdown, queue processing off the command path (setImmediate),
// completion posting and interrupts (MSI-X per CQ, INTx as a level), quiesce
// and the migration state stream.
import type { DeviceContext } from '../../src/server/context.js';
import type { MigrationStateName } from '../../src/server/device.js';
import type { Logger } from '../../src/util/logger.js';
import { executeAdmin } from './admin.js';
import { executeIo } from './io.js';
import type { Namespace } from './namespace.js';
import type { IoWorkerPool } from './workers/pool.js';
import { contextMem, type GuestMem } from './prp.js';
import { CompletionQueue, decodeSqe, NvmeStatus, SQE_SIZE, SubmissionQueue, type Completion, type CqState, type Sqe, type SqState } from './queues.js';
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
  /** Interrupts the library did not deliver (masked -> pending, no fd, suppressed). */
  interruptsNotDelivered: number;
  errors: number;
  /** Completions that had to wait for room in a full CQ. */
  cqFullWaits: number;
}

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
  sqs: SqState[];
  cqs: CqState[];
  aers: number[];
  events: number[];
  nsStats: Namespace['stats'];
}

const isPromise = <T>(v: unknown): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';

export class NvmeController {
  ctx!: DeviceContext;
  mem!: GuestMem;
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
  readonly stats: ControllerStats = { adminCommands: 0, ioCommands: 0, doorbells: 0, interrupts: 0, interruptsNotDelivered: 0, errors: 0, cqFullWaits: 0 };

  /** Migration: RUNNING or PRE_COPY. */
  private running = true;
  private quiesced = 0;
  private scheduled = false;
  private inflight = 0;
  private drainWaiters: (() => void)[] = [];
  /** Bumped on every controller reset: completions of older commands are dropped. */
  private generation = 0;
  private intxAsserted = false;
  private readonly dirty = new Set<CompletionQueue>();
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
    this.sqs[0] = new SubmissionQueue(0, this.asq, asqs, 0);
    this.cqs[0] = new CompletionQueue(0, this.acq, acqs, 0, true);
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
    this.dirty.clear();
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
      const posted = cq.setHead(value, this.mem, (sqid) => this.sqs[sqid]?.head ?? 0);
      if (posted > 0) {
        this.dirty.add(cq);
        this.flushInterrupts();
      }
      this.updateIntx();
      return;
    }
    const sq = this.sqs[qid];
    if (!sq || value >= sq.size) {
      this.log.warn(`SQ ${qid} tail doorbell ${value} ignored (${sq ? 'out of range' : 'no such queue'})`);
      return;
    }
    if (qid !== 0 && this.ioWorkers?.ring(index, value)) return;
    sq.tail = value;
    this.schedule();
  }

  // ---- processing ------------------------------------------------------

  private get canRun(): boolean {
    // No client (it is going away, e.g. after migrating out): its memory is not ours to touch.
    return this.enabled && this.running && this.quiesced === 0 && this.ctx.connected;
  }

  /** Queue processing runs on a later turn of the event loop, never inside the access that rang the doorbell. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.process();
    });
  }

  private process(): void {
    if (!this.canRun) return;
    let more = false;
    for (const sq of this.sqs) {
      if (!sq || sq.deleted) continue;
      // Round robin with a burst of at most 32 commands per queue per turn.
      for (let n = 0; n < 32 && !sq.empty && this.canRun; n++) {
        const at = sq.take();
        let raw: Uint8Array;
        try {
          raw = this.mem.readSync(at, SQE_SIZE);
        } catch (e) {
          this.fatal(`SQ ${sq.id} entry at 0x${at.toString(16)} unreadable: ${(e as Error).message}`);
          return;
        }
        this.execute(sq, decodeSqe(raw));
      }
      if (!sq.empty) more = true;
    }
    this.flushInterrupts();
    if (more) this.schedule();
  }

  private fatal(why: string): void {
    this.log.error(`controller fatal status: ${why}`);
    this.csts |= CSTS.CFS;
  }

  private execute(sq: SubmissionQueue, sqe: Sqe): void {
    const gen = this.generation;
    if (sq.id === 0) this.stats.adminCommands++;
    else this.stats.ioCommands++;
    let r: Completion | Promise<Completion> | null;
    try {
      r = sq.id === 0 ? (this.ioWorkers ? this.ioWorkers.admin(this, sqe, executeAdmin) : executeAdmin(this, sqe)) : executeIo(this, sqe);
    } catch (e) {
      r = this.failure(e, sqe);
    }
    if (r === null) return; // completes later by other means (AER)
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

  private finish(sq: SubmissionQueue, sqe: Sqe, gen: number, c: Completion): void {
    sq.inflight--;
    this.inflight--;
    if (gen === this.generation) {
      this.complete(sq, sqe.cid, c);
      this.flushInterrupts();
    }
    if (this.inflight === 0) for (const w of this.drainWaiters.splice(0)) w();
    if (sq.inflight === 0) sq.onIdle?.();
  }

  private failure(e: unknown, sqe: Sqe): Completion {
    this.stats.errors++;
    if (e instanceof NvmeStatus) {
      this.log.debug(`command 0x${sqe.opcode.toString(16)} cid ${sqe.cid}: ${e.message}`);
      return { result: 0, status: e.status };
    }
    this.log.error(`command 0x${sqe.opcode.toString(16)} cid ${sqe.cid} failed: ${(e as Error).stack ?? String(e)}`);
    return { result: 0, status: SC.INTERNAL | STATUS_DNR };
  }

  /** Posts a completion for a command of `sq` on its CQ. */
  complete(sq: SubmissionQueue, cid: number, c: Completion): void {
    const cq = this.cqs[sq.cqid];
    if (!cq) return;
    try {
      if (!cq.post(this.mem, { result: c.result, sqid: sq.id, cid, status: c.status }, sq.head)) this.stats.cqFullWaits++;
    } catch (e) {
      this.fatal(`CQ ${cq.id} unwritable: ${(e as Error).message}`);
      return;
    }
    this.dirty.add(cq);
  }

  /** Raises the interrupt of every CQ that got entries. */
  flushInterrupts(): void {
    if (this.dirty.size === 0) return;
    const msix = this.ctx.config.msixControl()?.enabled ?? false;
    // MSI with fewer vectors enabled than CQ vectors in use aliases by the low bits.
    const msiVectors = msix ? 0 : this.ctx.config.msiState()?.enabled ? this.ctx.config.msiState()!.vectors : 0;
    for (const cq of this.dirty) {
      if (!cq.ien || cq.unsignalled === 0) continue;
      cq.unsignalled = 0;
      this.stats.interrupts++;
      if (msix || msiVectors > 0) {
        const r = msix ? this.ctx.irq.trigger('msix', cq.iv) : this.ctx.irq.trigger('msi', cq.iv & (msiVectors - 1));
        if (r !== 'delivered') this.stats.interruptsNotDelivered++;
      }
    }
    this.dirty.clear();
    if (!msix && msiVectors === 0) this.updateIntx();
  }

  /** INTx is a level: asserted while an interrupt-enabled CQ holds unconsumed entries and INTMS bit 0 is clear. */
  updateIntx(): void {
    if (!this.ctx) return;
    const messages = (this.ctx.config.msixControl()?.enabled ?? false) || (this.ctx.config.msiState()?.enabled ?? false);
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
    this.complete(admin, cid, { result: dw0, status: 0 });
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
          this.dirty.add(cq);
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
    for (const q of s.sqs) this.sqs[q.id] = SubmissionQueue.load(q);
    for (const q of s.cqs) this.cqs[q.id] = CompletionQueue.load(q);
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

