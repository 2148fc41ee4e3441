// Submission and completion queues: ring state, entry fetch and completion
// posting (phase tag written last), and the NvmeStatus error type command
// handlers throw.
import { u64n, type GuestWindows } from './guest-window.js';
import type { GuestMem } from './prp.js';
import { STATUS_DNR } from './registers.js';

export const SQE_SIZE = 64;
export const CQE_SIZE = 16;

/** A command failed with an NVMe status (SCT << 8 | SC); DNR set unless `retry`. */
export class NvmeStatus extends Error {
  readonly status: number;
  constructor(status: number, message?: string, retry = false) {
    super(message ?? `NVMe status 0x${status.toString(16)}`);
    this.status = status | (retry ? 0 : STATUS_DNR);
  }
}

/**
 * One submission queue entry, decoded in place: the controller keeps one
 * instance and refills it for every command it fetches, so a handler must
 * copy what it needs before it awaits anything. PRP addresses are numbers
 * (-1 for 2^53 and above, where no guest memory is).
 */
export class Sqe {
  opcode = 0;
  /** FUSE bits 8-9, PSDT bits 14-15 of CDW0. */
  flags = 0;
  cid = 0;
  nsid = 0;
  prp1 = 0;
  prp2 = 0;
  cdw10 = 0;
  cdw11 = 0;
  cdw12 = 0;
  cdw13 = 0;
  cdw14 = 0;
  cdw15 = 0;

  /** Decodes the 64 bytes at `off` of `dv`. */
  load(dv: DataView, off: number): this {
    const cdw0 = dv.getUint32(off, true);
    this.opcode = cdw0 & 0xff;
    this.flags = (cdw0 >>> 8) & 0xff;
    this.cid = cdw0 >>> 16;
    this.nsid = dv.getUint32(off + 4, true);
    this.prp1 = u64n(dv, off + 24);
    this.prp2 = u64n(dv, off + 32);
    this.cdw10 = dv.getUint32(off + 40, true);
    this.cdw11 = dv.getUint32(off + 44, true);
    this.cdw12 = dv.getUint32(off + 48, true);
    this.cdw13 = dv.getUint32(off + 52, true);
    this.cdw14 = dv.getUint32(off + 56, true);
    this.cdw15 = dv.getUint32(off + 60, true);
    return this;
  }
}

/** Decodes a 64-byte entry into a new Sqe (tests, slow paths). */
export function decodeSqe(b: Uint8Array): Sqe {
  return new Sqe().load(new DataView(b.buffer, b.byteOffset, SQE_SIZE), 0);
}

/** What a command handler produces: DW0 of the completion and a status (0 = success). */
export interface Completion {
  result: number;
  status: number;
}

export interface SqState {
  id: number;
  base: string;
  size: number;
  cqid: number;
  head: number;
  tail: number;
  prio: number;
}

/** Shadow doorbell and EventIdx addresses of one queue (Doorbell Buffer Config), or -1 when off. */
export interface ShadowSlots {
  shadow: number;
  eventIdx: number;
}

export class SubmissionQueue implements ShadowSlots {
  head = 0;
  tail = 0;
  /** Commands fetched and not completed yet. */
  inflight = 0;
  deleted = false;
  shadow = -1;
  eventIdx = -1;
  /** Called when the queue's last running command finished (Delete I/O SQ waits for it). */
  onIdle?: () => void;
  constructor(
    readonly id: number,
    /** Guest address of entry 0 (page aligned). */
    readonly base: number,
    readonly size: number,
    readonly cqid: number,
    readonly prio = 0,
  ) {}

  get empty(): boolean {
    return this.head === this.tail;
  }

  /** Decodes the entry at the head into `sqe` and advances the head (caller checked !empty). Throws when the ring is unreadable. */
  fetch(win: GuestWindows, mem: GuestMem, sqe: Sqe): void {
    const at = this.base + this.head * SQE_SIZE;
    if (win.locate(at, SQE_SIZE, false)) sqe.load(win.dv, win.offset);
    else {
      const raw = mem.readSync(at, SQE_SIZE);
      sqe.load(new DataView(raw.buffer, raw.byteOffset, SQE_SIZE), 0);
    }
    this.head = (this.head + 1) % this.size;
  }

  save(): SqState {
    return { id: this.id, base: String(this.base), size: this.size, cqid: this.cqid, head: this.head, tail: this.tail, prio: this.prio };
  }

  static load(s: SqState): SubmissionQueue {
    const q = new SubmissionQueue(s.id, Number(s.base), s.size, s.cqid, s.prio);
    q.head = s.head;
    q.tail = s.tail;
    return q;
  }
}

/** A completion waiting for room in a full CQ. */
export interface PendingCqe {
  result: number;
  sqid: number;
  cid: number;
  status: number;
}

export interface CqState {
  id: number;
  base: string;
  size: number;
  head: number;
  tail: number;
  phase: number;
  iv: number;
  ien: boolean;
  pending: PendingCqe[];
}

export class CompletionQueue implements ShadowSlots {
  head = 0;
  tail = 0;
  /** Phase tag of the next entry the controller posts. */
  phase = 1;
  /** Completions waiting for room (queue full). */
  pending: PendingCqe[] = [];
  /** Entries posted since the last interrupt. */
  unsignalled = 0;
  shadow = -1;
  eventIdx = -1;
  /** Listed for the next flushInterrupts. */
  dirty = false;
  /** Interrupt coalescing: a timer is armed for this queue's vector. */
  coalesceTimer: NodeJS.Timeout | null = null;
  constructor(
    readonly id: number,
    /** Guest address of entry 0 (page aligned). */
    readonly base: number,
    readonly size: number,
    readonly iv: number,
    readonly ien: boolean,
  ) {}

  get full(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }

  /** Entries the host has not consumed yet. */
  get outstanding(): number {
    return (this.tail - this.head + this.size) % this.size;
  }

  /**
   * Writes a completion (DW0-2 first, then DW3 with the phase tag) or queues
   * it when the ring is full. Returns true if posted.
   */
  post(win: GuestWindows, mem: GuestMem, result: number, sqid: number, cid: number, status: number, sqHead: number): boolean {
    if (this.full || this.pending.length > 0) {
      this.pending.push({ result, sqid, cid, status });
      return false;
    }
    this.write(win, mem, result, sqid, cid, status, sqHead);
    return true;
  }

  private write(win: GuestWindows, mem: GuestMem, result: number, sqid: number, cid: number, status: number, sqHead: number): void {
    const at = this.base + this.tail * CQE_SIZE;
    const dw2 = ((sqHead & 0xffff) | ((sqid & 0xffff) << 16)) >>> 0;
    const dw3 = ((cid & 0xffff) | ((((status & 0x7fff) << 1) | this.phase) << 16)) >>> 0;
    if (win.locate(at, CQE_SIZE, true)) {
      const dv = win.dv;
      const o = win.offset;
      dv.setUint32(o, result >>> 0, true);
      dv.setUint32(o + 4, 0, true);
      dv.setUint32(o + 8, dw2, true);
      // The phase tag goes last: the host may be polling this entry.
      dv.setUint32(o + 12, dw3, true);
      win.dirty(o, CQE_SIZE);
    } else {
      const head = new Uint8Array(12);
      const hv = new DataView(head.buffer);
      hv.setUint32(0, result >>> 0, true);
      hv.setUint32(8, dw2, true);
      const tail = new Uint8Array(4);
      new DataView(tail.buffer).setUint32(0, dw3, true);
      mem.writeSync(at, head);
      mem.writeSync(at + 12, tail);
    }
    this.tail = (this.tail + 1) % this.size;
    if (this.tail === 0) this.phase ^= 1;
    this.unsignalled++;
  }

  /** The host consumed entries up to `head`; post what waited for room. Returns entries posted. */
  setHead(head: number, win: GuestWindows, mem: GuestMem, sqs: readonly (SubmissionQueue | undefined)[]): number {
    this.head = head;
    let n = 0;
    while (this.pending.length > 0 && !this.full) {
      const c = this.pending.shift()!;
      this.write(win, mem, c.result, c.sqid, c.cid, c.status, sqs[c.sqid]?.head ?? 0);
      n++;
    }
    return n;
  }

  save(): CqState {
    return { id: this.id, base: String(this.base), size: this.size, head: this.head, tail: this.tail, phase: this.phase, iv: this.iv, ien: this.ien, pending: this.pending.slice() };
  }

  static load(s: CqState): CompletionQueue {
    const q = new CompletionQueue(s.id, Number(s.base), s.size, s.iv, s.ien);
    q.head = s.head;
    q.tail = s.tail;
    q.phase = s.phase;
    q.pending = s.pending.slice();
    return q;
  }
}
