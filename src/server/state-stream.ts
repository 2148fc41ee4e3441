import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import { crc32 } from '../util/crc32.js';
import { concatBytes } from '../util/bytes.js';
import type { MigrationCallbacks, MigrationStateName } from './device.js';

/**
 * A device's state as named sections: register blobs and memory (e.g. a
 * shared region's bytes). Most devices describe their state this way and
 * get a migration stream without writing a format.
 */
export interface StateSections {
  [name: string]: Uint8Array;
}

/** What stateMigration() needs: a format tag and the device's save and load. */
export interface StateMigrationSpec {
  /** Format tag, e.g. 'my-device/1'. A destination refuses a stream with another tag. */
  tag: string;
  /** Collects the state when the final copy starts (device already stopped). */
  save(): StateSections;
  /** Applies a received, verified state (on RESUMING -> STOP). */
  load(state: StateSections): void;
  /** Told about every hop (start/stop timers, queues...). */
  onTransition?(to: MigrationStateName, from: MigrationStateName): void | Promise<void>;
  /** Advertise PRE_COPY (the stream is still sent whole in STOP_COPY). Default true. */
  preCopy?: boolean;
  /**
   * Largest stream a destination buffers (bytes); MIG_DATA_WRITE beyond it
   * is refused with E2BIG. A client could otherwise make the device hold any
   * amount of memory, also after it left (RESUMING outlives a connection).
   * Default 64 MiB.
   */
  maxStreamBytes?: number;
}

/** Default of StateMigrationSpec.maxStreamBytes. */
export const DEFAULT_MAX_STATE_STREAM_BYTES = 64 * 1048576;

const MAGIC = 0x53554656; // "VFUS" little-endian
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/**
 * Serialises sections: magic, tag, section count, then per section its
 * name and bytes, and a CRC-32 of everything before it.
 *   u32 magic | u32 tagLen | tag | u32 count | { u32 nameLen | name | u64 len | bytes }* | u32 crc
 */
export function encodeState(tag: string, sections: StateSections): Uint8Array {
  const parts: Uint8Array[] = [];
  const u32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    parts.push(b);
  };
  const t = enc.encode(tag);
  u32(MAGIC);
  u32(t.length);
  parts.push(t);
  const names = Object.keys(sections);
  u32(names.length);
  for (const n of names) {
    const nb = enc.encode(n);
    u32(nb.length);
    parts.push(nb);
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(sections[n]!.length), true);
    parts.push(len, sections[n]!);
  }
  const body = concatBytes(parts);
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body), true);
  return out;
}

/** Parses and verifies a stream made by encodeState. Throws ProtocolError(EINVAL) on any mismatch. */
export function decodeState(expectedTag: string, data: Uint8Array): StateSections {
  const bad = (why: string) => new ProtocolError(Errno.EINVAL, `device state stream: ${why}`);
  if (data.length < 16) throw bad('too short');
  const dv = new DataView(data.buffer, data.byteOffset, data.length);
  const body = data.subarray(0, data.length - 4);
  if (crc32(body) !== dv.getUint32(data.length - 4, true)) throw bad('checksum mismatch');
  let p = 0;
  const need = (n: number) => {
    if (p + n > body.length) throw bad('truncated');
  };
  const u32 = () => {
    need(4);
    const v = dv.getUint32(p, true);
    p += 4;
    return v;
  };
  const bytes = (n: number) => {
    need(n);
    const b = body.subarray(p, p + n);
    p += n;
    return b;
  };
  if (u32() !== MAGIC) throw bad('bad magic');
  const tag = dec.decode(bytes(u32()));
  if (tag !== expectedTag) throw bad(`tag ${JSON.stringify(tag)}, expected ${JSON.stringify(expectedTag)}`);
  const count = u32();
  const out: StateSections = {};
  for (let i = 0; i < count; i++) {
    const name = dec.decode(bytes(u32()));
    need(8);
    const len = dv.getBigUint64(p, true);
    p += 8;
    if (len > BigInt(body.length - p)) throw bad('section overruns the stream');
    out[name] = bytes(Number(len)).slice();
  }
  if (p !== body.length) throw bad('trailing bytes');
  return out;
}

/**
 * Migration callbacks from a StateMigrationSpec: the state is captured when
 * STOP_COPY begins and streamed in whatever chunk sizes the client reads;
 * the destination buffers what it receives and verifies it on RESUMING ->
 * STOP, failing that transition if the stream is damaged.
 */
export function stateMigration(spec: StateMigrationSpec): MigrationCallbacks {
  let outgoing: Uint8Array | null = null;
  let pos = 0;
  let incoming: Uint8Array[] = [];
  let received = 0;
  const maxStream = spec.maxStreamBytes ?? DEFAULT_MAX_STATE_STREAM_BYTES;
  return {
    preCopy: spec.preCopy ?? true,
    async transition(to, from) {
      if (to === 'STOP_COPY') {
        outgoing = encodeState(spec.tag, spec.save());
        pos = 0;
      } else if (to === 'RESUMING') {
        incoming = [];
        received = 0;
      } else if (to === 'STOP' && from === 'RESUMING') {
        const all = concatBytes(incoming);
        incoming = [];
        received = 0;
        spec.load(decodeState(spec.tag, all));
      } else if (from === 'STOP_COPY') {
        outgoing = null;
      }
      await spec.onTransition?.(to, from);
    },
    read(max) {
      if (!outgoing) return new Uint8Array(0);
      const n = Math.min(max, outgoing.length - pos);
      const out = outgoing.subarray(pos, pos + n);
      pos += n;
      return out;
    },
    write(data) {
      if (received + data.length > maxStream) {
        throw new ProtocolError(Errno.E2BIG, `migration stream over ${maxStream} bytes (maxStreamBytes)`);
      }
      incoming.push(data.slice());
      received += data.length;
    },
  };
}
