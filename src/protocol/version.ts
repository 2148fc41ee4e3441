// VERSION (1): `u16 major, u16 minor, [UTF-8 JSON + NUL]`. Request and reply
// share the layout. Capabilities JSON: `{"capabilities": {...}}` (§2.1).
import { Errno } from './errno.js';
import { einval, ProtocolError } from './errors.js';
import { isJsonObject, type JsonValue, parseJson, stringifyJson } from './json.js';
import { MAX_MSG_FDS_LIMIT } from './constants.js';
import { isU64 } from './ranges.js';
import { checkU16, need, u16, viewOf, Writer } from './wire.js';

/** Protocol major every implementation uses. */
export const VERSION_MAJOR = 0;
/** Highest minor libvfio-user speaks; a server replies min(clientMinor, this). */
export const VERSION_MINOR_MAX = 2;

/** VERSION request or reply: major, minor and the capabilities JSON. */
export interface VersionMessage {
  major: number;
  minor: number;
  /** JSON text without its NUL terminator; undefined when the payload ends after minor. */
  json?: string | undefined;
}

/** The `twin_socket` VERSION capability. */
export interface TwinSocketCapability {
  supported: boolean;
  fdIndex?: number;
}

/** The `migration` VERSION capability: dirty page size and largest bitmap. */
export interface MigrationCapability {
  pgsize: number;
  maxBitmapSize?: number;
}

/** Parsed capabilities with defaults applied. */
export interface VersionCapabilities {
  /** How many fds the sender of this value can receive per message. Default 1 (SPEC). */
  maxMsgFds: number;
  /** Largest transfer count the sender accepts. Default 1048576. */
  maxDataXferSize: number;
  /** OR of supported page sizes. A `bigint` only when beyond 2^53. Default 4096. */
  pgsizes: bigint | number;
  /** Default 65535. */
  maxDmaMaps: number;
  /** Default false. */
  writeMultiple: boolean;
  twinSocket?: TwinSocketCapability;
  migration?: MigrationCapability;
  /** Members of `capabilities` this library does not know, kept verbatim. */
  extensions?: Record<string, unknown>;
  /** Keys the peer actually sent inside `capabilities`. */
  present: Set<string>;
}

/** Input to encodeCapabilities: only the keys given are written. */
export type CapabilitiesInput = Partial<Omit<VersionCapabilities, 'present'>>;

/** The spec's values for capabilities a peer leaves out. */
export const CAPABILITY_DEFAULTS = {
  maxMsgFds: 1,
  maxDataXferSize: 1048576,
  pgsizes: 4096,
  maxDmaMaps: 65535,
  writeMultiple: false,
} as const;

const KNOWN_KEYS = new Set([
  'max_msg_fds',
  'max_data_xfer_size',
  'pgsizes',
  'max_dma_maps',
  'write_multiple',
  'twin_socket',
  'migration',
]);

const utf8 = new TextEncoder();

// ---- payload codec ------------------------------------------------------------

/** Encodes `major, minor` and, when `json` is given, the JSON plus its NUL. */
export function encodeVersion(msg: VersionMessage): Uint8Array {
  const json = msg.json === undefined ? undefined : utf8.encode(msg.json);
  if (json?.includes(0)) throw einval('VERSION JSON must not contain NUL');
  const w = new Writer(4 + (json ? json.length + 1 : 0));
  w.u16(0, 'major', msg.major).u16(2, 'minor', msg.minor);
  if (json) w.bytes(4, json);
  return w.buf;
}

/**
 * Decodes a VERSION payload. Less than 4 bytes, JSON not NUL-terminated, or
 * not valid UTF-8 → EINVAL. The JSON ends at the first NUL (as a C parser
 * would read it); only the final byte must be NUL.
 */
export function decodeVersion(payload: Uint8Array): VersionMessage {
  need(payload, 4, 'VERSION');
  const dv = viewOf(payload);
  const major = u16(dv, 0);
  const minor = u16(dv, 2);
  if (payload.length === 4) return { major, minor };
  if (payload[payload.length - 1] !== 0) throw einval('VERSION JSON is not NUL-terminated');
  const end = payload.indexOf(0, 4);
  let json: string;
  try {
    json = new TextDecoder('utf-8', { fatal: true }).decode(payload.subarray(4, end));
  } catch {
    throw einval('VERSION JSON is not valid UTF-8');
  }
  return { major, minor, json };
}

/** Encodes a VERSION request (see encodeVersion). */
export const encodeVersionRequest = encodeVersion;
/** Encodes a VERSION reply (see encodeVersion). */
export const encodeVersionReply = encodeVersion;
/** Decodes a VERSION request (see decodeVersion). */
export const decodeVersionRequest = decodeVersion;
/** Decodes a VERSION reply (see decodeVersion). */
export const decodeVersionReply = decodeVersion;

// ---- capabilities -------------------------------------------------------------

function intMember(obj: Record<string, JsonValue>, key: string, min: number, max: number): number | undefined {
  if (!(key in obj)) return undefined;
  const v = obj[key];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw einval(`capability ${key} must be an integer`);
  if (v < min || v > max) throw einval(`capability ${key}=${v} outside ${min}..${max}`);
  return v;
}

function boolMember(obj: Record<string, JsonValue>, key: string): boolean | undefined {
  if (!(key in obj)) return undefined;
  const v = obj[key];
  if (typeof v !== 'boolean') throw einval(`capability ${key} must be a boolean`);
  return v;
}

/**
 * Parses VERSION JSON into capabilities with defaults. `json` undefined (no
 * JSON sent) gives the defaults. Not parsable, not an object, a
 * `capabilities` member that is not an object, or a wrongly typed member →
 * EINVAL; `max_msg_fds` outside 0..1024 → EINVAL. Unknown keys go to
 * `extensions`. A missing `capabilities` member means all defaults.
 * `migration` without `pgsize` defaults pgsize to 4096.
 */
export function parseCapabilities(json: string | undefined): VersionCapabilities {
  const caps: VersionCapabilities = { ...CAPABILITY_DEFAULTS, present: new Set() };
  if (json === undefined) return caps;
  const root = parseJson(json);
  if (!isJsonObject(root)) throw einval('VERSION JSON must be an object');
  if (!('capabilities' in root)) return caps;
  const c = root.capabilities;
  if (!isJsonObject(c)) throw einval('"capabilities" must be an object');
  for (const k of Object.keys(c)) caps.present.add(k);

  const MAXN = Number.MAX_SAFE_INTEGER;
  caps.maxMsgFds = intMember(c, 'max_msg_fds', 0, MAX_MSG_FDS_LIMIT) ?? caps.maxMsgFds;
  caps.maxDataXferSize = intMember(c, 'max_data_xfer_size', 0, MAXN) ?? caps.maxDataXferSize;
  caps.maxDmaMaps = intMember(c, 'max_dma_maps', 0, MAXN) ?? caps.maxDmaMaps;
  caps.writeMultiple = boolMember(c, 'write_multiple') ?? caps.writeMultiple;
  if ('pgsizes' in c) {
    const v = c.pgsizes;
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < 0) throw einval('capability pgsizes must be a non-negative integer');
      caps.pgsizes = v;
    } else if (typeof v === 'bigint') {
      if (!isU64(v)) throw einval('capability pgsizes must be a u64');
      caps.pgsizes = v;
    } else throw einval('capability pgsizes must be an integer');
  }
  if ('twin_socket' in c) {
    const t = c.twin_socket;
    if (!isJsonObject(t)) throw einval('capability twin_socket must be an object');
    const supported = boolMember(t, 'supported') ?? false;
    const fdIndex = intMember(t, 'fd_index', 0, MAX_MSG_FDS_LIMIT);
    caps.twinSocket = fdIndex === undefined ? { supported } : { supported, fdIndex };
  }
  if ('migration' in c) {
    const m = c.migration;
    if (!isJsonObject(m)) throw einval('capability migration must be an object');
    const pgsize = intMember(m, 'pgsize', 1, MAXN) ?? 4096;
    const maxBitmapSize = intMember(m, 'max_bitmap_size', 0, MAXN);
    caps.migration = maxBitmapSize === undefined ? { pgsize } : { pgsize, maxBitmapSize };
  }
  const ext: Record<string, unknown> = {};
  let any = false;
  for (const k of Object.keys(c)) {
    if (KNOWN_KEYS.has(k)) continue;
    Object.defineProperty(ext, k, { value: c[k], enumerable: true, writable: true, configurable: true });
    any = true;
  }
  if (any) caps.extensions = ext;
  return caps;
}

/**
 * Serialises capabilities compactly: `{"capabilities":{...}}` with no
 * whitespace and only the keys given, in the order max_msg_fds,
 * max_data_xfer_size, pgsizes, max_dma_maps, write_multiple, twin_socket,
 * migration, then extensions. Keep a server reply short: QEMU refuses a
 * VERSION reply longer than its own 198-byte request.
 */
export function encodeCapabilities(caps: CapabilitiesInput): string {
  const out: Record<string, unknown> = {};
  const num = (k: string, v: unknown, max = Number.MAX_SAFE_INTEGER): void => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw einval(`capability ${k} must be an integer 0..${max}`);
    out[k] = v;
  };
  num('max_msg_fds', caps.maxMsgFds, MAX_MSG_FDS_LIMIT);
  num('max_data_xfer_size', caps.maxDataXferSize);
  if (caps.pgsizes !== undefined) {
    const p = caps.pgsizes;
    if (typeof p === 'bigint' ? !isU64(p) : !(Number.isInteger(p) && p >= 0)) throw einval('capability pgsizes must be a u64');
    out.pgsizes = p;
  }
  num('max_dma_maps', caps.maxDmaMaps);
  if (caps.writeMultiple !== undefined) {
    if (typeof caps.writeMultiple !== 'boolean') throw einval('capability write_multiple must be a boolean');
    out.write_multiple = caps.writeMultiple;
  }
  if (caps.twinSocket !== undefined) {
    const t: Record<string, unknown> = { supported: caps.twinSocket.supported === true };
    if (caps.twinSocket.fdIndex !== undefined) {
      const f = caps.twinSocket.fdIndex;
      if (!Number.isInteger(f) || f < 0 || f > MAX_MSG_FDS_LIMIT) throw einval('twin_socket.fd_index out of range');
      t.fd_index = f;
    }
    out.twin_socket = t;
  }
  if (caps.migration !== undefined) {
    const m: Record<string, unknown> = {};
    const p = caps.migration.pgsize;
    if (!Number.isInteger(p) || p < 1) throw einval('migration.pgsize must be a positive integer');
    m.pgsize = p;
    if (caps.migration.maxBitmapSize !== undefined) {
      const b = caps.migration.maxBitmapSize;
      if (!Number.isInteger(b) || b < 0) throw einval('migration.max_bitmap_size must be a non-negative integer');
      m.max_bitmap_size = b;
    }
    out.migration = m;
  }
  if (caps.extensions) {
    for (const [k, v] of Object.entries(caps.extensions)) {
      if (KNOWN_KEYS.has(k)) throw einval(`extension key ${k} collides with a known capability`);
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
  return stringifyJson({ capabilities: out });
}

/** Decodes a VERSION payload and parses its capabilities in one go. */
export function decodeVersionWithCapabilities(payload: Uint8Array): VersionMessage & { capabilities: VersionCapabilities } {
  const msg = decodeVersion(payload);
  return { ...msg, capabilities: parseCapabilities(msg.json) };
}

/** Builds a VERSION payload carrying `caps` serialised by encodeCapabilities. */
export function encodeVersionWithCapabilities(major: number, minor: number, caps: CapabilitiesInput): Uint8Array {
  return encodeVersion({ major, minor, json: encodeCapabilities(caps) });
}

/**
 * Minor a server should answer with: min(clientMinor, VERSION_MINOR_MAX).
 * Throws EINVAL for a major other than 0 (what libvfio-user does).
 */
export function negotiateMinor(clientMajor: number, clientMinor: number): number {
  checkU16('major', clientMajor);
  checkU16('minor', clientMinor);
  if (clientMajor !== VERSION_MAJOR) throw new ProtocolError(Errno.EINVAL, `unsupported major ${clientMajor}`);
  return Math.min(clientMinor, VERSION_MINOR_MAX);
}
