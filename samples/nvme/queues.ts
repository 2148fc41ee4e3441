// Submission and completion queues: ring state, entry fetch and completion
// posting (phase tag written last), and the NvmeStatus error type command
// handlers throw.
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

/** One decoded submission queue entry (the dwords a handler needs). */
export interface Sqe {
  raw: Uint8Array;
  opcode: number;
  /** FUSE bits 8-9, PSDT bits 14-15 of CDW0. */
  flags: number;
  cid: number;
  nsid: number;
  prp1: bigint;
  prp2: bigint;
  cdw10: number;
  cdw11: number;
  cdw12: number;
  cdw13: number;
  cdw14: number;
  cdw15: number;
}

export function decodeSqe(b: Uint8Array): Sqe {
  const dv = new DataView(b.buffer, b.byteOffset, SQE_SIZE);
  const cdw0 = dv.getUint32(0, true);
  return {
    raw: b,
    opcode: cdw0 & 0xff,
    flags: (cdw0 >>> 8) & 0xff,
    cid: cdw0 >>> 16,
    nsid: dv.getUint32(4, true),
    prp1: dv.getBigUint64(24, true),
    prp2: dv.getBigUint64(32, true),
    cdw10: dv.getUint32(40, true),
    cdw11: dv.getUint32(44, true),
    cdw12: dv.getUint32(48, true),
    cdw13: dv.getUint32(52, true),
    cdw14: dv.getUint32(56, true),
    cdw15: dv.getUint32(60, true),
  };
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

export class SubmissionQueue {
  head = 0;
  tail = 0;
  /** Commands fetched and not completed yet. */
  inflight = 0;
  deleted = false;
  /** Called when the queue's last running command finished (Delete I/O SQ waits for it). */
  onIdle?: () => void;
  constructor(
    readonly id: number,
    readonly base: bigint,
    readonly size: number,
    readonly cqid: number,
    readonly prio = 0,
  ) {}

  get empty(): boolean {
    return this.head === this.tail;
  }

  /** Takes the next entry (caller checked !empty); returns its address. */
  take(): bigint {
    const at = this.base + BigInt(this.head * SQE_SIZE);
    this.head = (this.head + 1) % this.size;
    return at;
  }

  save(): SqState {
    return { id: this.id, base: this.base.toString(), size: this.size, cqid: this.cqid, head: this.head, tail: this.tail, prio: this.prio };
  }

  static load(s: SqState): SubmissionQueue {
    const q = new SubmissionQueue(s.id, BigInt(s.base), s.size, s.cqid, s.prio);
    q.head = s.head;
    q.tail = s.tail;
    return q;
  }
}

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

export class CompletionQueue {
  head = 0;
  tail = 0;
  /** Phase tag of the next entry the controller posts. */
  phase = 1;
  /** Completions waiting for room (queue full). */
  pending: PendingCqe[] = [];
  /** Entries posted since the last interrupt. */
  unsignalled = 0;
  constructor(
    readonly id: number,
    readonly base: bigint,
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
  post(mem: GuestMem, c: PendingCqe, sqHead: number): boolean {
    if (this.full || this.pending.length > 0) {
      this.pending.push(c);
      return false;
    }
    this.write(mem, c, sqHead);
    return true;
  }

  private write(mem: GuestMem, c: PendingCqe, sqHead: number): void {
    const at = this.base + BigInt(this.tail * CQE_SIZE);
    const head = new Uint8Array(12);
    const dv = new DataView(head.buffer);
    dv.setUint32(0, c.result >>> 0, true);
    dv.setUint32(8, (sqHead & 0xffff) | ((c.sqid & 0xffff) << 16), true);
    const dw3 = new Uint8Array(4);
    new DataView(dw3.buffer).setUint32(0, ((c.cid & 0xffff) | ((((c.status & 0x7fff) << 1) | this.phase) << 16)) >>> 0, true);
    mem.writeSync(at, head);
    mem.writeSync(at + 12n, dw3);
    this.tail = (this.tail + 1) % this.size;
    if (this.tail === 0) this.phase ^= 1;
    this.unsignalled++;
  }

  /** The host consumed entries up to `head`; post what waited for room. Returns entries posted. */
  setHead(head: number, mem: GuestMem, sqHeadOf: (sqid: number) => number): number {
    this.head = head;
    let n = 0;
    while (this.pending.length > 0 && !this.full) {
      const c = this.pending.shift()!;
      this.write(mem, c, sqHeadOf(c.sqid));
      n++;
    }
    return n;
  }

  save(): CqState {
    return { id: this.id, base: this.base.toString(), size: this.size, head: this.head, tail: this.tail, phase: this.phase, iv: this.iv, ien: this.ien, pending: this.pending.slice() };
  }

  static load(s: CqState): CompletionQueue {
    const q = new CompletionQueue(s.id, BigInt(s.base), s.size, s.iv, s.ien);
    q.head = s.head;
    q.tail = s.tail;
    q.phase = s.phase;
    q.pending = s.pending.slice();
    return q;
  }
}
