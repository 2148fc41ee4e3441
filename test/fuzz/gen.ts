// Seeded generator of hostile vfio-user client traffic, shared by the
// in-memory dispatcher properties and the socket fuzzer. Messages are built
// by hand (not with the codecs, which refuse bad values) so that every field
// can take any value: offsets near 2^64, counts near 2^32, sizes that do not
// match msg_size, unknown flags and commands.

/** Small fast PRNG (xorshift128+ on two 32-bit halves is enough here: sfc32). */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }
  /** [0, n) */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      out[i] = v & 0xff;
      if (i + 1 < n) out[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) out[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) out[i + 3] = v >>> 24;
    }
    return out;
  }
}

const PAGE = 4096;
const U64_MAX = (1n << 64n) - 1n;

/** "Interesting" 32-bit values. */
export function edgeU32(r: Rng): number {
  return r.pick([0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 20, 24, 32, 40, 64, 255, 256, 0x1000, 0xfff, 0x4000, 0x10000, 0x100000, 0x100001, 0x100020, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, r.u32(), r.int(64)]);
}

/** "Interesting" 64-bit values: near 0, near 2^64, page multiples, near 2^53. */
export function edgeU64(r: Rng): bigint {
  return r.pick([
    0n,
    1n,
    8n,
    BigInt(PAGE),
    BigInt(PAGE * r.range(1, 64)),
    0x4000n,
    0x10000n,
    1n << 32n,
    (1n << 32n) - 4096n,
    (1n << 53n) - 1n,
    1n << 53n,
    (1n << 53n) + 1n,
    1n << 60n,
    (1n << 60n) + 1n,
    1n << 63n,
    U64_MAX,
    U64_MAX - 7n,
    U64_MAX - 4095n,
    U64_MAX - BigInt(PAGE) + 1n,
    r.u64(),
    BigInt(r.int(0x100000)),
  ]);
}

/** What kind of fd the harness should attach. */
export type FdKind =
  | 'eventfd'
  | 'eventfd-blocking'
  | 'memfd' // sized to fit `size` bytes (page-rounded)
  | 'memfd-short' // smaller than the declared map
  | 'memfd-sealed'
  | 'pipe-r'
  | 'pipe-w'
  | 'pipe-full' // write end of a pipe whose buffer is full
  | 'socket'
  | 'devnull'
  | 'tmpfile'
  | 'dir';

export interface FdSpec {
  kind: FdKind;
  size?: number;
}

export interface GenMessage {
  /** Whole wire bytes (header + payload), possibly lying about msg_size. */
  bytes: Uint8Array;
  fds: FdSpec[];
  command: number;
  /** Declared msg_size matches bytes.length (the stream stays in sync). */
  inSync: boolean;
  /** The command expects a reply (command type and no NO_REPLY). */
  wantsReply: boolean;
  label: string;
}

class W {
  readonly buf: Uint8Array;
  private readonly dv: DataView;
  constructor(n: number) {
    this.buf = new Uint8Array(n);
    this.dv = new DataView(this.buf.buffer);
  }
  u16(o: number, v: number): this {
    if (o + 2 <= this.buf.length) this.dv.setUint16(o, v & 0xffff, true);
    return this;
  }
  u32(o: number, v: number): this {
    if (o + 4 <= this.buf.length) this.dv.setUint32(o, v >>> 0, true);
    return this;
  }
  u64(o: number, v: bigint): this {
    if (o + 8 <= this.buf.length) this.dv.setBigUint64(o, BigInt.asUintN(64, v), true);
    return this;
  }
  bytes(o: number, b: Uint8Array): this {
    this.buf.set(b.subarray(0, Math.max(0, this.buf.length - o)), o);
    return this;
  }
}

export function header(msgId: number, command: number, msgSize: number, flags = 0, error = 0): Uint8Array {
  return new W(16).u16(0, msgId).u16(2, command).u32(4, msgSize).u32(8, flags).u32(12, error).buf;
}

export function frame(command: number, payload: Uint8Array, msgId = 1, flags = 0): Uint8Array {
  const out = new Uint8Array(16 + payload.length);
  out.set(header(msgId, command, out.length, flags), 0);
  out.set(payload, 16);
  return out;
}

const enc = new TextEncoder();

export function versionPayload(r: Rng | null, json?: string): Uint8Array {
  const j =
    json ??
    (r === null
      ? '{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"migration":{"pgsize":4096,"max_bitmap_size":4194304}}}'
      : r.pick([
          '{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"migration":{"pgsize":4096,"max_bitmap_size":4194304}}}',
          '{"capabilities":{"max_msg_fds":32,"max_data_xfer_size":1024}}',
          '{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":4096,"twin_socket":{"supported":true},"write_multiple":true,"pgsizes":4096,"max_dma_maps":65535}}',
          '{"capabilities":{"max_msg_fds":1,"migration":{"pgsize":8192}}}',
          '{"capabilities":{"max_msg_fds":0,"max_data_xfer_size":0}}',
          '{"capabilities":{"max_msg_fds":-1}}',
          '{"capabilities":{"max_data_xfer_size":1e300,"migration":{"pgsize":1}}}',
          '{"capabilities":{"migration":{"pgsize":4096,"max_bitmap_size":1e30}}}',
          '{"capabilities":{"__proto__":{"x":1},"constructor":1}}',
          '{"capabilities":[1,2,3]}',
          '{"capabilities":{"max_msg_fds":16,"max_msg_fds":17}}',
          '[' .repeat(r.range(1, 5000)),
          '{"a":' + '{"a":'.repeat(r.range(1, 3000)),
          '{}',
          '',
          'not json',
          '"\\ud800"',
          '{"capabilities":{"vfio_user_ts_irq_msg":true}}',
          '{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576}}',
        ]));
  const body = enc.encode(j);
  const nul = r === null || !r.chance(0.1);
  const w = new W(4 + body.length + (nul ? 1 : 0));
  w.u16(0, r === null ? 0 : r.chance(0.9) ? 0 : r.int(3)).u16(2, r === null ? 2 : r.chance(0.85) ? 2 : r.int(5)).bytes(4, body);
  return w.buf;
}

/** State the generator tracks so that some messages are valid in context. */
export interface GenState {
  /** DMA regions it believes are mapped (iova, size). */
  maps: { iova: bigint; size: bigint }[];
}

export function newGenState(): GenState {
  return { maps: [] };
}

const MIG_STATES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 0xffffffff];

function featurePayload(r: Rng, st: GenState): Uint8Array {
  const feature = r.pick([1, 2, 2, 2, 6, 6, 7, 8, 8, 0, 3, 9, 0xffff]);
  const op = r.pick([1 << 16, 1 << 17, 1 << 18, (1 << 16) | (1 << 18), (1 << 17) | (1 << 18), 3 << 16, 0, 1 << 19, r.u32() & 0xfff80000]);
  const flags = (feature | op) >>> 0;
  let data: Uint8Array;
  switch (feature) {
    case 2:
      data = new W(8).u32(0, r.pick(MIG_STATES)).u32(4, r.chance(0.8) ? 0xffffffff : r.u32()).buf;
      break;
    case 6:
    case 7: {
      const n = r.pick([0, 1, 2, 3, 0xffffffff, 100000]);
      const real = Math.min(n, r.int(4));
      const w = new W(16 + 16 * real);
      w.u64(0, r.pick([4096n, 4096n, 8192n, 1n, 0n, 3n, 1n << 40n, U64_MAX, 1n << 63n])).u32(8, n).u32(12, r.chance(0.9) ? 0 : 1);
      for (let i = 0; i < real; i++) {
        const m = st.maps.length > 0 && r.chance(0.6) ? r.pick(st.maps) : null;
        w.u64(16 + 16 * i, m ? m.iova : edgeU64(r)).u64(24 + 16 * i, m ? m.size : edgeU64(r));
      }
      data = w.buf;
      break;
    }
    case 8: {
      const m = st.maps.length > 0 && r.chance(0.7) ? r.pick(st.maps) : null;
      data = new W(24)
        .u64(0, m ? m.iova + BigInt(r.chance(0.8) ? 0 : PAGE) : edgeU64(r))
        .u64(8, m ? (r.chance(0.7) ? m.size : edgeU64(r)) : edgeU64(r))
        .u64(16, r.pick([4096n, 4096n, 8192n, 512n, 1n, 0n, 3n, 1n << 40n, U64_MAX]))
        .buf;
      break;
    }
    case 1:
      data = r.chance(0.8) ? new Uint8Array(0) : r.bytes(r.int(16));
      break;
    default:
      data = r.bytes(r.int(24));
  }
  const replyNeed = feature === 8 ? 8 + 24 + r.pick([8, 8, 16, 64, 0]) : 16 + data.length;
  const argsz = r.chance(0.8) ? Math.max(replyNeed, 8 + data.length) : edgeU32(r);
  const w = new W(8 + data.length).u32(0, argsz).u32(4, flags).bytes(8, data);
  return w.buf;
}

function setIrqsPayload(r: Rng): { payload: Uint8Array; fds: FdSpec[] } {
  const index = r.chance(0.9) ? r.int(5) : edgeU32(r);
  const action = r.pick([0x8, 0x10, 0x20, 0x20, 0x20]);
  const dataType = r.pick([0x1, 0x2, 0x4, 0x4, 0x4, 0x3, 0x0]);
  const flags = r.chance(0.95) ? action | dataType : r.u32();
  const start = r.chance(0.9) ? r.int(4) : edgeU32(r);
  const count = r.chance(0.85) ? r.int(4) : edgeU32(r);
  let data: Uint8Array = new Uint8Array(0);
  const fds: FdSpec[] = [];
  if ((flags & 0x4) !== 0) {
    const n = r.chance(0.85) ? Math.min(count, 17) : r.int(20);
    for (let i = 0; i < n; i++) fds.push({ kind: r.pick<FdKind>(['eventfd', 'eventfd', 'eventfd', 'eventfd-blocking', 'pipe-w', 'pipe-full', 'pipe-r', 'devnull', 'socket', 'memfd', 'dir']) });
  } else if ((flags & 0x2) !== 0) {
    data = r.chance(0.9) ? Uint8Array.from({ length: Math.min(count, 64) }, () => r.int(2)) : r.bytes(r.int(32));
  } else if (r.chance(0.05)) {
    data = r.bytes(r.int(16));
  }
  const w = new W(20 + data.length);
  w.u32(0, r.chance(0.9) ? 20 + data.length : edgeU32(r)).u32(4, flags).u32(8, index).u32(12, start).u32(16, count).bytes(20, data);
  if (r.chance(0.05)) fds.push({ kind: 'eventfd' });
  return { payload: w.buf, fds };
}

/** Region sizes of the sample devices, for accesses that are sometimes in bounds. */
const REGION_SIZES = [8, 0x4000, 0x100, 0, 0, 0, 0, 256, 0];

function regionAccess(r: Rng, write: boolean, maxXfer: number): Uint8Array {
  const region = r.chance(0.9) ? r.pick([0, 0, 1, 1, 2, 7, 7, 3, 6, 8]) : edgeU32(r);
  const size = REGION_SIZES[region] ?? 0;
  let offset: bigint;
  let count: number;
  if (r.chance(0.6) && size > 0) {
    count = r.pick([1, 2, 4, 8, Math.min(size, 64), size]);
    offset = BigInt(r.int(Math.max(1, size - count + 1)));
    if (region === 0) {
      offset = 0n;
      count = 8;
    }
  } else {
    offset = edgeU64(r);
    count = r.chance(0.7) ? r.pick([0, 1, 4, 8, 4096, 0x4000, maxXfer, maxXfer + 1]) : edgeU32(r);
  }
  const dataLen = write ? (r.chance(0.9) ? Math.min(count, maxXfer + 16) : r.int(64)) : r.chance(0.05) ? r.int(16) : 0;
  const w = new W(16 + dataLen).u64(0, offset).u32(8, region).u32(12, count);
  if (dataLen > 0) w.bytes(16, region === 0 && r.chance(0.7) ? new W(8).u64(0, BigInt(Math.floor(Date.now() / 1000) + r.int(3))).buf : r.bytes(dataLen));
  return w.buf;
}

/**
 * One message. `maxXfer` bounds the sizes of valid-looking transfers so a
 * campaign does not spend its time copying megabytes.
 */
export function genMessage(r: Rng, st: GenState, opts: { maxXfer?: number; allowFds?: boolean } = {}): GenMessage {
  const maxXfer = opts.maxXfer ?? 0x4000;
  const cmd = r.chance(0.03) ? r.pick([0, 14, 19, 20, 0xffff, r.int(0x10000)]) : r.pick([1, 2, 2, 2, 3, 3, 4, 5, 5, 6, 7, 8, 8, 8, 9, 9, 9, 10, 10, 10, 11, 12, 13, 15, 16, 16, 16, 16, 17, 17, 18, 18]);
  let payload: Uint8Array;
  let fds: FdSpec[] = [];
  switch (cmd) {
    case 1:
      payload = versionPayload(r);
      break;
    case 2: {
      const reuse = st.maps.length > 0 && r.chance(0.2);
      const size = reuse ? st.maps[r.int(st.maps.length)]!.size : r.chance(0.8) ? BigInt(PAGE * r.pick([1, 1, 2, 4, 16])) : edgeU64(r);
      const iova = reuse ? st.maps[r.int(st.maps.length)]!.iova : r.chance(0.7) ? BigInt(PAGE * r.int(64)) : edgeU64(r);
      const offset = r.chance(0.8) ? BigInt(PAGE * r.int(4)) : edgeU64(r);
      const flags = r.chance(0.9) ? r.pick([3, 3, 1, 2, 0, 7, 0xb]) : r.u32();
      const w = new W(32).u32(0, r.chance(0.95) ? 32 : edgeU32(r)).u32(4, flags).u64(8, offset).u64(16, iova).u64(24, size);
      payload = w.buf;
      if (r.chance(0.75)) {
        const small = Number(size) <= 64 * PAGE ? Number(size) + Number(offset <= BigInt(PAGE * 8) ? offset : 0n) : PAGE;
        fds.push({ kind: r.pick<FdKind>(['memfd', 'memfd', 'memfd', 'memfd-sealed', 'memfd-short', 'tmpfile', 'eventfd', 'pipe-r', 'socket', 'devnull', 'dir']), size: small });
        if (r.chance(0.05)) fds.push({ kind: 'memfd', size: PAGE });
      }
      if (size > 0n && size < 1n << 40n) st.maps.push({ iova, size });
      if (st.maps.length > 64) st.maps.shift();
      break;
    }
    case 3: {
      const m = st.maps.length > 0 && r.chance(0.6) ? st.maps.splice(r.int(st.maps.length), 1)[0]! : null;
      const flags = r.chance(0.85) ? r.pick([0, 0, 0, 2, 1, 3]) : r.u32();
      const extra = flags & 1 ? 16 + r.pick([0, 8, 64]) : 0;
      const w = new W(24 + extra)
        .u32(0, r.chance(0.9) ? 24 + extra : edgeU32(r))
        .u32(4, flags)
        .u64(8, m ? m.iova : edgeU64(r))
        .u64(16, m ? m.size : edgeU64(r));
      if (extra) w.u64(24, r.pick([4096n, 0n, U64_MAX])).u64(32, edgeU64(r));
      if (flags & 2) st.maps.length = 0;
      payload = w.buf;
      break;
    }
    case 4:
      payload = new W(r.chance(0.9) ? 16 : r.int(24)).u32(0, r.chance(0.9) ? 16 : edgeU32(r)).buf;
      break;
    case 5:
      payload = new W(r.chance(0.9) ? 32 : r.int(40)).u32(0, r.chance(0.7) ? r.pick([32, 80, 104, 0x1000]) : edgeU32(r)).u32(8, r.chance(0.9) ? r.int(10) : edgeU32(r)).buf;
      break;
    case 6:
      payload = new W(r.chance(0.9) ? 16 : r.int(24)).u32(0, r.chance(0.7) ? r.pick([16, 48, 4096]) : edgeU32(r)).u32(8, r.chance(0.9) ? r.int(10) : edgeU32(r)).buf;
      break;
    case 7:
      payload = new W(r.chance(0.9) ? 16 : r.int(24)).u32(0, r.chance(0.9) ? 16 : edgeU32(r)).u32(8, r.chance(0.9) ? r.int(6) : edgeU32(r)).buf;
      break;
    case 8: {
      const s = setIrqsPayload(r);
      payload = s.payload;
      fds = s.fds;
      break;
    }
    case 9:
      payload = regionAccess(r, false, maxXfer);
      break;
    case 10:
      payload = regionAccess(r, true, maxXfer);
      break;
    case 11:
    case 12:
      payload = new W(16 + (cmd === 12 ? r.int(32) : 0)).u64(0, edgeU64(r)).u64(8, edgeU64(r)).buf;
      break;
    case 13:
      payload = r.chance(0.9) ? new Uint8Array(0) : r.bytes(r.int(16));
      break;
    case 15: {
      const n = r.chance(0.9) ? r.int(6) : r.pick([0, 200, 100000, 0xffffffff]);
      const real = Math.min(n, 8);
      const w = new W(8 + 24 * real).u64(0, BigInt(r.chance(0.9) ? real : n));
      for (let i = 0; i < real; i++) {
        const at = 8 + 24 * i;
        const region = r.pick([0, 1, 2, 7, 9]);
        w.u64(at, r.chance(0.8) ? BigInt(r.int(16)) : edgeU64(r)).u32(at + 8, region).u32(at + 12, r.chance(0.9) ? r.pick([1, 2, 4, 8]) : edgeU32(r)).bytes(at + 16, r.bytes(8));
      }
      payload = w.buf;
      break;
    }
    case 16:
      payload = featurePayload(r, st);
      break;
    case 17:
      payload = new W(r.chance(0.95) ? 8 : r.int(12)).u32(0, edgeU32(r)).u32(4, r.chance(0.7) ? r.pick([0, 1, 8, 1024, 0x4000, 0x4008, maxXfer]) : edgeU32(r)).buf;
      break;
    case 18: {
      const n = r.chance(0.8) ? r.pick([0, 1, 8, 1024, 0x4000, 0x4008]) : r.int(2048);
      const declared = r.chance(0.9) ? n : edgeU32(r);
      payload = new W(8 + n).u32(0, r.chance(0.9) ? 8 + n : edgeU32(r)).u32(4, declared).bytes(8, r.bytes(n)).buf;
      break;
    }
    default:
      payload = r.bytes(r.int(40));
  }
  // Occasionally attach fds to commands that take none.
  if (fds.length === 0 && r.chance(0.04)) fds.push({ kind: r.pick<FdKind>(['eventfd', 'memfd', 'pipe-r', 'devnull']), size: PAGE });
  if (opts.allowFds === false) fds = [];
  let flags = 0;
  if (r.chance(0.1)) flags = r.pick([0x10, 0x10, 0x1, 0x21, 0x20, 0x2, 0xf, 0x40, 0x80000000, r.u32()]);
  const msgId = r.int(0x10000);
  let bytes = frame(cmd, payload, msgId, flags);
  let inSync = true;
  let label = `cmd${cmd}`;
  // Mutations.
  if (r.chance(0.08)) {
    const n = r.range(1, 4);
    for (let i = 0; i < n; i++) {
      const at = 16 + r.int(Math.max(1, bytes.length - 16));
      if (at < bytes.length) bytes[at] ^= 1 << r.int(8);
    }
    label += '+flip';
  }
  if (r.chance(0.03) && bytes.length > 16) {
    // Truncate, keeping msg_size honest (a short payload).
    bytes = frame(cmd, payload.subarray(0, r.int(payload.length)), msgId, flags);
    label += '+short';
  }
  if (r.chance(0.03)) {
    // Trailing garbage inside msg_size.
    bytes = frame(cmd, concat(payload, r.bytes(r.range(1, 64))), msgId, flags);
    label += '+long';
  }
  if (r.chance(0.01)) {
    // msg_size lies: smaller than the header, a bit off, or huge.
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    const lie = r.pick([0, 1, 15, bytes.length - 1, bytes.length + 1, bytes.length + 4096, 0x7fffffff, 0xffffffff, 2 * 1048576, 64 * 1048576 + 1]);
    dv.setUint32(4, lie >>> 0, true);
    inSync = false;
    label += '+size';
  }
  const type = flags & 0xf;
  return { bytes, fds, command: cmd, inSync, wantsReply: inSync && type === 0 && (flags & 0x10) === 0 && (flags & ~0x3f) === 0, label };
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Migration commands in a random (mostly wrong) order: state changes to any
 * state, data reads and writes before, during and after.
 */
export function genMigrationBurst(r: Rng, n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const k = r.int(4);
    if (k === 0 || k === 1) {
      const s = r.pick([1, 2, 3, 4, 6, 6, 3, 1, 0, 5, 7]);
      out.push(frame(16, new W(16).u32(0, 16).u32(4, 2 | (1 << 17)).u32(8, s).u32(12, 0xffffffff).buf, r.int(0x10000)));
    } else if (k === 2) {
      out.push(frame(17, new W(8).u32(0, 8 + 1024).u32(4, r.pick([0, 8, 1024, 0x4008])).buf, r.int(0x10000)));
    } else {
      const d = r.bytes(r.pick([8, 1024, 0x4000]));
      out.push(frame(18, new W(8 + d.length).u32(0, 8 + d.length).u32(4, d.length).bytes(8, d).buf, r.int(0x10000)));
    }
  }
  return out;
}
