// The rings an I/O worker serves: submission queues it fetches from and
// completion queues it posts to (phase tag written last), through the
// worker's own mapping of guest memory. Kept apart from the controller's
// queue classes so that the controller's single-threaded hot path can change
// shape (shadow doorbells, in-place decoding) without touching the workers.
import type { WorkerDma } from '../../../src/server/dma-worker.js';
import { u64n } from '../guest-window.js';
import type { PendingCqe } from '../queues.js';

export const SQE_SIZE = 64;
export const CQE_SIZE = 16;

/** The fields of a submission queue entry an I/O command uses. PRP addresses are numbers (-1 at 2^53 and above). */
export interface WorkerSqe {
  opcode: number;
  /** FUSE bits 8-9, PSDT bits 14-15 of CDW0. */
  flags: number;
  cid: number;
  nsid: number;
  prp1: number;
  prp2: number;
  cdw10: number;
  cdw11: number;
  cdw12: number;
}

export class WorkerSq {
  head = 0;
  tail = 0;
  /** Commands fetched and not completed yet. */
  inflight = 0;
  deleted = false;
  /** Called when the last running command finished (Delete I/O SQ waits for it). */
  onIdle: (() => void) | null = null;

  constructor(
    readonly id: number,
    /** Guest address of entry 0. */
    readonly base: number,
    readonly size: number,
    readonly cqid: number,
  ) {}

  get empty(): boolean {
    return this.head === this.tail;
  }

  /** Reads and decodes the entry at the head, then advances it (caller checked !empty). Throws a DmaError when unreadable. */
  fetch(dma: WorkerDma): WorkerSqe {
    const raw = dma.readSync(this.base + this.head * SQE_SIZE, SQE_SIZE);
    this.head = (this.head + 1) % this.size;
    const dv = new DataView(raw.buffer, raw.byteOffset, SQE_SIZE);
    const cdw0 = dv.getUint32(0, true);
    return {
      opcode: cdw0 & 0xff,
      flags: (cdw0 >>> 8) & 0xff,
      cid: cdw0 >>> 16,
      nsid: dv.getUint32(4, true),
      prp1: u64n(dv, 24),
      prp2: u64n(dv, 32),
      cdw10: dv.getUint32(40, true),
      cdw11: dv.getUint32(44, true),
      cdw12: dv.getUint32(48, true),
    };
  }
}

export class WorkerCq {
  head = 0;
  tail = 0;
  /** Phase tag of the next entry posted. */
  phase = 1;
  /** Entries posted since the last interrupt. */
  unsignalled = 0;
  /** Completions waiting for room (the ring is full). */
  private readonly pending: PendingCqe[] = [];
  /** DW0-2 and DW3 of the entry being written, reused. */
  private readonly body = new Uint8Array(12);
  private readonly dw3 = new Uint8Array(4);
  private readonly bodyDv = new DataView(this.body.buffer);
  private readonly dw3Dv = new DataView(this.dw3.buffer);

  constructor(
    readonly id: number,
    readonly base: number,
    readonly size: number,
    readonly iv: number,
    readonly ien: boolean,
  ) {}

  get full(): boolean {
    return (this.tail + 1) % this.size === this.head;
  }

  /** Entries the host has not consumed. */
  get outstanding(): number {
    return (this.tail - this.head + this.size) % this.size;
  }

  /** Posts a completion, or queues it while the ring is full. Throws a DmaError when the ring is unwritable. */
  post(dma: WorkerDma, c: PendingCqe, sqHead: number): void {
    if (this.full || this.pending.length > 0) this.pending.push(c);
    else this.write(dma, c, sqHead);
  }

  private write(dma: WorkerDma, c: PendingCqe, sqHead: number): void {
    const at = this.base + this.tail * CQE_SIZE;
    this.bodyDv.setUint32(0, c.result >>> 0, true);
    this.bodyDv.setUint32(4, 0, true);
    this.bodyDv.setUint32(8, (sqHead & 0xffff) | ((c.sqid & 0xffff) << 16), true);
    this.dw3Dv.setUint32(0, ((c.cid & 0xffff) | ((((c.status & 0x7fff) << 1) | this.phase) << 16)) >>> 0, true);
    // The phase tag (in DW3) becomes visible last: the host polls on it.
    dma.writeSync(at, this.body);
    dma.writeSync(at + 12, this.dw3);
    this.tail = (this.tail + 1) % this.size;
    if (this.tail === 0) this.phase ^= 1;
    this.unsignalled++;
  }

  /** The host consumed entries up to `head`: post what waited for room. Returns the number posted. */
  setHead(head: number, dma: WorkerDma, sqHeadOf: (sqid: number) => number): number {
    this.head = head;
    let n = 0;
    while (this.pending.length > 0 && !this.full) {
      const c = this.pending.shift()!;
      this.write(dma, c, sqHeadOf(c.sqid));
      n++;
    }
    return n;
  }
}
