// An in-process NVMe "host driver" for tests: it owns guest memory (a memfd
// the device maps), programs the controller through BAR0 like Linux's nvme
// driver does, and submits commands and reaps completions itself. Like Linux
// it can use shadow doorbells (Doorbell Buffer Config with EventIdx), and it
// can post its doorbell writes as QEMU does.
import { native } from '../../src/native/binding.js';
import { VfioUserClient } from '../../src/client/client.js';
import type { GuestMemory } from '../../src/client/guest-memory.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';
import type { DeviceContext } from '../../src/server/context.js';
import { CC, CSTS, DOORBELL_BASE, REG } from './registers.js';

export const PAGE = 4096;
export const ADMIN_SQ = 0x0000n;
export const ADMIN_CQ = 0x1000n;
export const ADMIN_DEPTH = 32;
/** Shadow doorbell and EventIdx pages (Doorbell Buffer Config), beside the admin queues. */
export const DBBUF_DBS = 0x2000n;
export const DBBUF_EIS = 0x3000n;
/** Per I/O queue pair q (1-based): SQ at 0x10000 * q, CQ 0x8000 after it. */
export const ioSqBase = (q: number): bigint => BigInt(0x10000 * (q + 1));
export const ioCqBase = (q: number): bigint => ioSqBase(q) + 0x8000n;
/** Data pages are handed out from here. */
const HEAP_START = 0x200000;

export interface Cqe {
  result: number;
  sqhd: number;
  sqid: number;
  cid: number;
  /** 15-bit status field (SCT << 8 | SC, plus CRD/M/DNR bits). */
  status: number;
  /** SCT << 8 | SC without DNR/M/CRD. */
  code: number;
}

export interface Cmd {
  opcode: number;
  nsid?: number;
  flags?: number;
  prp1?: bigint;
  prp2?: bigint;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  cdw14?: number;
  cdw15?: number;
}

interface QueuePair {
  qid: number;
  sqBase: bigint;
  cqBase: bigint;
  sqDepth: number;
  cqDepth: number;
  sqTail: number;
  cqHead: number;
  /** Shadow doorbell slots (byte offsets in guest memory) when shadow doorbells are on; -1 otherwise. */
  sqShadow: number;
  cqShadow: number;
  phase: number;
  nextCid: number;
  waiting: Map<number, (c: Cqe) => void>;
}

/** Connects a client to `ctx` over an in-memory transport pair. */
export async function connectInMemory(ctx: DeviceContext): Promise<VfioUserClient> {
  const limits = { maxMessageSize: ctx.options.maxMessageSize, maxFdsPerMessage: ctx.options.maxMsgFds };
  const [a, b] = createMemoryPair({ dupFd: (fd) => native.dup(fd), closeFd: (fd) => native.close(fd), limits });
  ctx.attach(b);
  return VfioUserClient.over(a);
}

/** The EventIdx test of Linux's nvme driver: did the host's update from `old` to `next` pass `eventIdx`? (16-bit ring arithmetic) */
export function needEvent(eventIdx: number, next: number, old: number): boolean {
  return ((next - eventIdx - 1) & 0xffff) < ((next - old) & 0xffff);
}

/** Doorbell traffic the host generated. */
export interface HostDoorbellStats {
  /** MMIO doorbell writes (REGION_WRITEs). */
  mmio: number;
  /** Shadow doorbell updates that needed no MMIO write (EventIdx not passed). */
  shadowOnly: number;
}

export class NvmeHost {
  readonly queues = new Map<number, QueuePair>();
  private heap = HEAP_START;
  private pollTimer: NodeJS.Timeout | null = null;
  interrupts = 0;
  /** Doorbell writes go out as posted REGION_WRITEs (NO_REPLY), as QEMU sends them. */
  postedDoorbells = false;
  /** Shadow doorbell and EventIdx pages once enableShadowDoorbells() succeeded. */
  dbbuf: { dbs: bigint; eis: bigint } | null = null;
  readonly doorbellStats: HostDoorbellStats = { mmio: 0, shadowOnly: 0 };
  /** While set (the "VM" is paused for a migration), nothing is reaped and no doorbell is rung. */
  paused = false;

  constructor(
    public client: VfioUserClient,
    readonly mem: GuestMemory,
  ) {
    this.listen(client);
  }

  /** Counts the client's interrupts and reaps on each. */
  listen(client: VfioUserClient): void {
    client.on('irq', () => {
      this.interrupts++;
      if (client === this.client) this.poll();
    });
  }

  /** Guest memory and the config bits a driver sets: Bus Master + Memory, MSI-X on, one eventfd per vector. */
  static async attach(client: VfioUserClient, opts: { memSize?: number; vectors?: number; msix?: boolean; mem?: GuestMemory } = {}): Promise<NvmeHost> {
    const mem = opts.mem ?? (await client.createGuestMemory({ iova: 0, size: opts.memSize ?? 16 << 20, useFd: true }));
    const host = new NvmeHost(client, mem);
    await host.setupPci(opts.vectors ?? 17, opts.msix ?? true);
    return host;
  }

  async setupPci(vectors: number, msix: boolean): Promise<void> {
    const c = this.client;
    await c.regionWrite(7, 4, new Uint8Array([0x06, 0x00])); // Memory Space + Bus Master
    if (msix) {
      const cap = await this.findCap(0x11);
      const ctl = await c.regionRead(7, cap + 2, 2);
      const v = (ctl[0]! | (ctl[1]! << 8)) | 0x8000;
      await c.regionWrite(7, cap + 2, new Uint8Array([v & 0xff, v >> 8]));
      await c.enableIrqEventfds('msix', 0, vectors);
    } else {
      await c.enableIrqEventfds('intx', 0, 1);
    }
  }

  async findCap(id: number): Promise<number> {
    const cfg = await this.client.regionRead(7, 0, 256);
    for (let p = cfg[0x34]! & 0xfc; p; p = cfg[p + 1]! & 0xfc) if (cfg[p] === id) return p;
    throw new Error(`capability 0x${id.toString(16)} not found`);
  }

  // ---- registers ----
  async r32(off: number): Promise<number> {
    const b = await this.client.regionRead(0, off, 4);
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
  }
  async r64(off: number): Promise<bigint> {
    const b = await this.client.regionRead(0, off, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
  async w32(off: number, v: number): Promise<void> {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    await this.client.regionWrite(0, off, b);
  }
  async w64(off: number, v: bigint): Promise<void> {
    await this.w32(off, Number(v & 0xffffffffn));
    await this.w32(off + 4, Number(v >> 32n));
  }

  /** Disable, program the admin queue, enable; waits for CSTS.RDY. */
  async enable(): Promise<void> {
    await this.w32(REG.CC, 0);
    await this.waitCsts((s) => (s & CSTS.RDY) === 0);
    this.mem.bytes.fill(0, 0, 0x2000);
    await this.w32(REG.AQA, ((ADMIN_DEPTH - 1) << 16) | (ADMIN_DEPTH - 1));
    await this.w64(REG.ASQ, ADMIN_SQ);
    await this.w64(REG.ACQ, ADMIN_CQ);
    this.dbbuf = null;
    this.queues.clear();
    this.queues.set(0, { qid: 0, sqBase: ADMIN_SQ, cqBase: ADMIN_CQ, sqDepth: ADMIN_DEPTH, cqDepth: ADMIN_DEPTH, sqTail: 0, cqHead: 0, sqShadow: -1, cqShadow: -1, phase: 1, nextCid: 1, waiting: new Map() });
    await this.w32(REG.CC, CC.EN | (6 << CC.iosqesShift) | (4 << CC.iocqesShift));
    await this.waitCsts((s) => (s & CSTS.RDY) !== 0);
  }

  async waitCsts(ok: (csts: number) => boolean, timeoutMs = 2000): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.r32(REG.CSTS);
      if (ok(s)) return s;
      if (s & CSTS.CFS) throw new Error(`controller fatal status (CSTS 0x${s.toString(16)})`);
      if (Date.now() > end) throw new Error(`CSTS 0x${s.toString(16)} did not reach the expected state`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Creates I/O CQ+SQ pair `qid` with `depth` entries, CQ on vector `iv`. */
  async createIoQueue(qid: number, depth = 64, iv = qid, ien = true, cqDepth = depth): Promise<void> {
    this.mem.bytes.fill(0, Number(ioCqBase(qid)), Number(ioCqBase(qid)) + cqDepth * 16);
    const cq = await this.admin({ opcode: 0x05, prp1: ioCqBase(qid), cdw10: qid | ((cqDepth - 1) << 16), cdw11: 1 | (ien ? 2 : 0) | (iv << 16) });
    if (cq.code) throw new Error(`create CQ ${qid}: status 0x${cq.code.toString(16)}`);
    const sq = await this.admin({ opcode: 0x01, prp1: ioSqBase(qid), cdw10: qid | ((depth - 1) << 16), cdw11: 1 | (qid << 16) });
    if (sq.code) throw new Error(`create SQ ${qid}: status 0x${sq.code.toString(16)}`);
    const shadow = (off: number): number => (this.dbbuf ? Number(this.dbbuf.dbs) + qid * 8 + off : -1);
    this.queues.set(qid, { qid, sqBase: ioSqBase(qid), cqBase: ioCqBase(qid), sqDepth: depth, cqDepth, sqTail: 0, cqHead: 0, sqShadow: shadow(0), cqShadow: shadow(4), phase: 1, nextCid: 1, waiting: new Map() });
  }

  /**
   * Doorbell Buffer Config as Linux's nvme driver issues it (before the I/O
   * queues exist): a zeroed shadow doorbell page and EventIdx page. From then
   * on I/O queues created here update their shadow doorbells and write the
   * MMIO doorbell only when the controller's EventIdx asks for it. Returns the
   * completion (status non-zero when the controller refused).
   */
  async enableShadowDoorbells(pages?: { dbs: bigint; eis: bigint }): Promise<Cqe> {
    const dbs = pages?.dbs ?? DBBUF_DBS;
    const eis = pages?.eis ?? DBBUF_EIS;
    if (!pages) {
      this.bytesAt(dbs, PAGE).fill(0);
      this.bytesAt(eis, PAGE).fill(0);
    }
    const c = await this.admin({ opcode: 0x7c, prp1: dbs, prp2: eis });
    if (c.code === 0) this.dbbuf = { dbs, eis };
    return c;
  }

  /** The dword at guest offset `off`, read with a full fence (Atomics) as the driver's mb() would. */
  private load32(off: number): number {
    return Atomics.load(this.i32(), off / 4) >>> 0;
  }

  private store32(off: number, v: number): void {
    Atomics.store(this.i32(), off / 4, v | 0);
  }

  private i32view: Int32Array | null = null;
  private i32(): Int32Array {
    const b = this.mem.bytes;
    if (!this.i32view || this.i32view.buffer !== b.buffer) this.i32view = new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
    return this.i32view;
  }

  /** EventIdx the controller published for a shadow slot. */
  eventIdx(shadowOff: number): number {
    return this.load32(shadowOff - Number(this.dbbuf!.dbs) + Number(this.dbbuf!.eis));
  }

  /** Linux's nvme_dbbuf_update_and_check_event: writes the shadow, then says whether the MMIO doorbell is needed. */
  private shadowUpdate(slot: number, value: number): boolean {
    if (slot < 0) return true;
    const old = this.load32(slot);
    this.store32(slot, value);
    if (needEvent(this.eventIdx(slot), value, old)) return true;
    this.doorbellStats.shadowOnly++;
    return false;
  }

  /** Writes doorbell `off` (posted when postedDoorbells is set). */
  private doorbell(off: number, value: number): Promise<void> {
    this.doorbellStats.mmio++;
    if (this.postedDoorbells) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, value >>> 0, true);
      this.client.regionWritePosted(0, off, b);
      return Promise.resolve();
    }
    return this.w32(off, value);
  }

  private ringSq(q: QueuePair): Promise<void> {
    if (!this.shadowUpdate(q.sqShadow, q.sqTail)) return Promise.resolve();
    return this.doorbell(DOORBELL_BASE + 8 * q.qid, q.sqTail);
  }

  /** Allocates page-aligned guest memory (never freed; call resetHeap between phases). */
  alloc(bytes: number): bigint {
    const at = this.heap;
    this.heap += Math.ceil(bytes / PAGE) * PAGE;
    if (this.heap > this.mem.size) throw new Error('test guest memory exhausted');
    return BigInt(at);
  }
  resetHeap(): void {
    this.heap = HEAP_START;
  }
  bytesAt(iova: bigint, len: number): Uint8Array {
    return this.mem.bytes.subarray(Number(iova), Number(iova) + len);
  }

  /** PRP1/PRP2 for a contiguous buffer (a PRP list page when it spans more than two pages). */
  prps(buf: bigint, len: number): { prp1: bigint; prp2: bigint } {
    const first = PAGE - Number(buf % BigInt(PAGE));
    if (len <= first) return { prp1: buf, prp2: 0n };
    const pages: bigint[] = [];
    for (let off = first; off < len; off += PAGE) pages.push(buf + BigInt(off));
    if (pages.length === 1) return { prp1: buf, prp2: pages[0]! };
    return { prp1: buf, prp2: this.prpList(pages) };
  }

  /** Writes a PRP list (chained over as many pages as needed) and returns its address. */
  prpList(pages: bigint[], firstOffset = 0): bigint {
    const listPage = this.alloc(PAGE);
    const start = listPage + BigInt(firstOffset);
    const dv = new DataView(this.mem.bytes.buffer, this.mem.bytes.byteOffset);
    let at = start;
    for (let i = 0; i < pages.length; i++) {
      const slotsLeft = (PAGE - Number(at % BigInt(PAGE))) / 8;
      if (slotsLeft === 1 && i < pages.length - 1) {
        const next = this.alloc(PAGE);
        dv.setBigUint64(Number(at), next, true);
        at = next;
      }
      dv.setBigUint64(Number(at), pages[i]!, true);
      at += 8n;
    }
    return start;
  }

  // ---- commands ----

  /** Writes the SQE and rings the doorbell; resolves with the completion. */
  submit(qid: number, cmd: Cmd): Promise<Cqe> {
    const q = this.queues.get(qid);
    if (!q) throw new Error(`no queue ${qid}`);
    const cid = q.nextCid;
    q.nextCid = (q.nextCid % 0xfff0) + 1;
    this.writeSqe(q, cid, cmd);
    const done = new Promise<Cqe>((resolve) => q.waiting.set(cid, resolve));
    // The completion can arrive before the doorbell write's reply (the controller runs the queue inside the
    // write), so a test may close the connection with that reply outstanding: the completion is the result.
    void this.ringSq(q).catch(() => {});
    this.startPolling();
    return done;
  }

  /** Queues an SQE without ringing the doorbell (ring() later); returns the completion promise. */
  enqueue(qid: number, cmd: Cmd): Promise<Cqe> {
    const q = this.queues.get(qid)!;
    const cid = q.nextCid;
    q.nextCid = (q.nextCid % 0xfff0) + 1;
    this.writeSqe(q, cid, cmd);
    this.startPolling();
    return new Promise<Cqe>((resolve) => q.waiting.set(cid, resolve));
  }

  async ring(qid: number): Promise<void> {
    await this.ringSq(this.queues.get(qid)!);
  }

  private writeSqe(q: QueuePair, cid: number, cmd: Cmd): void {
    const at = Number(q.sqBase) + q.sqTail * 64;
    const b = this.mem.bytes.subarray(at, at + 64);
    b.fill(0);
    const dv = new DataView(b.buffer, b.byteOffset, 64);
    dv.setUint32(0, (cmd.opcode & 0xff) | ((cmd.flags ?? 0) << 8) | (cid << 16), true);
    dv.setUint32(4, cmd.nsid ?? 0, true);
    dv.setBigUint64(24, cmd.prp1 ?? 0n, true);
    dv.setBigUint64(32, cmd.prp2 ?? 0n, true);
    dv.setUint32(40, cmd.cdw10 ?? 0, true);
    dv.setUint32(44, cmd.cdw11 ?? 0, true);
    dv.setUint32(48, cmd.cdw12 ?? 0, true);
    dv.setUint32(52, cmd.cdw13 ?? 0, true);
    dv.setUint32(56, cmd.cdw14 ?? 0, true);
    dv.setUint32(60, cmd.cdw15 ?? 0, true);
    q.sqTail = (q.sqTail + 1) % q.sqDepth;
  }

  admin(cmd: Cmd): Promise<Cqe> {
    return this.submit(0, cmd);
  }

  /** Reaps completions on every queue; rings CQ head doorbells. */
  poll(): number {
    if (this.paused) return 0;
    let n = 0;
    for (const q of this.queues.values()) {
      let reaped = 0;
      for (;;) {
        const at = Number(q.cqBase) + q.cqHead * 16;
        const dv = new DataView(this.mem.bytes.buffer, this.mem.bytes.byteOffset + at, 16);
        const dw3 = dv.getUint32(12, true);
        if ((dw3 >>> 16 & 1) !== q.phase) break;
        const status = (dw3 >>> 17) & 0x7fff;
        const c: Cqe = { result: dv.getUint32(0, true), sqhd: dv.getUint16(8, true), sqid: dv.getUint16(10, true), cid: dw3 & 0xffff, status, code: status & 0x7ff };
        q.cqHead = (q.cqHead + 1) % q.cqDepth;
        if (q.cqHead === 0) q.phase ^= 1;
        reaped++;
        const w = this.queues.get(c.sqid)?.waiting;
        const resolve = w?.get(c.cid);
        if (resolve) {
          w!.delete(c.cid);
          resolve(c);
        }
      }
      if (reaped > 0 && this.shadowUpdate(q.cqShadow, q.cqHead)) void this.doorbell(DOORBELL_BASE + 8 * q.qid + 4, q.cqHead).catch(() => {});
      n += reaped;
    }
    return n;
  }

  get outstanding(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.waiting.size;
    return n;
  }

  private startPolling(): void {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => {
      this.poll();
      if (this.outstanding === 0 && this.pollTimer) {
        clearInterval(this.pollTimer);
        this.pollTimer = null;
      }
    }, 1);
  }

  stop(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  // ---- I/O helpers ----

  async write(qid: number, lba: number, data: Uint8Array, buf?: bigint): Promise<Cqe> {
    const at = buf ?? this.alloc(data.length);
    this.bytesAt(at, data.length).set(data);
    const { prp1, prp2 } = this.prps(at, data.length);
    return this.submit(qid, { opcode: 0x01, nsid: 1, prp1, prp2, cdw10: lba, cdw11: 0, cdw12: data.length / 512 - 1 });
  }

  async read(qid: number, lba: number, len: number, buf?: bigint): Promise<{ cqe: Cqe; data: Uint8Array }> {
    const at = buf ?? this.alloc(len);
    this.bytesAt(at, len).fill(0xee);
    const { prp1, prp2 } = this.prps(at, len);
    const cqe = await this.submit(qid, { opcode: 0x02, nsid: 1, prp1, prp2, cdw10: lba, cdw11: 0, cdw12: len / 512 - 1 });
    return { cqe, data: this.bytesAt(at, len).slice() };
  }
}
