// Decodes one vfio-user message into plain fields for the trace: what a
// reader needs to follow a session (regions, offsets, counts, DMA ranges,
// IRQ vectors and fds, migration states), never the bulk data. Decoding is
// lenient: a payload the codecs refuse is reported as such, and the message
// is forwarded anyway (the proxy never changes what it carries).
import { Command, commandName } from '../../src/protocol/commands.js';
import { DeviceFeature, DmaUnmapFlags, SET_IRQS_ACTION_TYPE_MASK, SET_IRQS_DATA_TYPE_MASK } from '../../src/protocol/constants.js';
import { decodeDeviceFeatureReply, decodeDmaLoggingControl, decodeDmaLoggingReport, decodeDmaLoggingReportRequest, decodeMigrationData } from '../../src/protocol/device-feature.js';
import { decodeDeviceInfoReply } from '../../src/protocol/device-info.js';
import { errnoName } from '../../src/protocol/errno.js';
import { CMD_X_VM_INTERRUPT, decodeVmInterrupt } from '../../src/protocol/extensions.js';
import { FLAG_ERROR, FLAG_NO_REPLY, isReply, type MessageHeader } from '../../src/protocol/header.js';
import { decodeIrqInfoReply } from '../../src/protocol/irq-info.js';
import { decodeRegionInfoReply, isSparseMmapCap, isTypeCap } from '../../src/protocol/region-info.js';
import { decodeVersion } from '../../src/protocol/version.js';

/** A decoded field value: numbers, strings, booleans, or lists of them. */
export type TraceValue = number | string | boolean | TraceValue[] | { [k: string]: TraceValue };

/** Which way a message went. */
export type TraceDirection = 'c>s' | 's>c';

/** One traced message. */
export interface TraceEvent {
  /** Seconds since the proxy started. */
  t: number;
  /** Session number (one per accepted client). */
  session: number;
  /** 'main' or 'twin' (the twin socket, when one was negotiated). */
  socket: 'main' | 'twin';
  dir: TraceDirection;
  id: number;
  /** Command number. */
  cmd: number;
  /** VERSION, DMA_MAP... (UNKNOWN(n) otherwise). */
  name: string;
  kind: 'command' | 'reply';
  flags: number;
  /** NO_REPLY set on a command. */
  noReply: boolean;
  /** msg_size, header included. */
  size: number;
  fds: number;
  /** errno name of an error reply. */
  error?: string;
  /** Milliseconds from the command to this reply. */
  latencyMs?: number;
  /** Decoded payload fields. */
  payload: Record<string, TraceValue>;
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
const dv = (p: Uint8Array): DataView => new DataView(p.buffer, p.byteOffset, p.byteLength);
const IRQ = ['INTx', 'MSI', 'MSI-X', 'ERR', 'REQ'];
const STATES = ['ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'];
const FEATURES: Record<number, string> = {
  [DeviceFeature.MIGRATION]: 'MIGRATION',
  [DeviceFeature.MIG_DEVICE_STATE]: 'MIG_DEVICE_STATE',
  [DeviceFeature.DMA_LOGGING_START]: 'DMA_LOGGING_START',
  [DeviceFeature.DMA_LOGGING_STOP]: 'DMA_LOGGING_STOP',
  [DeviceFeature.DMA_LOGGING_REPORT]: 'DMA_LOGGING_REPORT',
};

/** Short command name (without VFIO_USER_). */
export function shortName(cmd: number): string {
  if (cmd === CMD_X_VM_INTERRUPT) return 'X_VM_INTERRUPT';
  return commandName(cmd).replace(/^VFIO_USER_/, '');
}

/** First `n` bytes as hex, with an ellipsis when there are more. */
function peek(b: Uint8Array, n = 8): string {
  const s = Buffer.from(b.subarray(0, n)).toString('hex');
  return b.length > n ? `${s}...` : s;
}

function setIrqsFlags(f: number): string {
  const data = { 1: 'NONE', 2: 'BOOL', 4: 'EVENTFD' }[f & SET_IRQS_DATA_TYPE_MASK] ?? `data?${f & 7}`;
  const action = { 8: 'MASK', 16: 'UNMASK', 32: 'TRIGGER' }[f & SET_IRQS_ACTION_TYPE_MASK] ?? `action?${f & 0x38}`;
  return `${data}|${action}`;
}

function regionAccess(p: Uint8Array, withData: boolean): Record<string, TraceValue> {
  if (p.length < 16) return { short: p.length };
  const v = dv(p);
  const out: Record<string, TraceValue> = { region: v.getUint32(8, true), offset: hex(v.getBigUint64(0, true)), count: v.getUint32(12, true) };
  if (withData && p.length > 16) out.data = peek(p.subarray(16));
  return out;
}

function dmaAccess(p: Uint8Array, withData: boolean): Record<string, TraceValue> {
  if (p.length < 16) return { short: p.length };
  const v = dv(p);
  const out: Record<string, TraceValue> = { address: hex(v.getBigUint64(0, true)), count: Number(v.getBigUint64(8, true)) };
  if (withData && p.length > 16) out.data = peek(p.subarray(16));
  return out;
}

function feature(p: Uint8Array, reply: boolean): Record<string, TraceValue> {
  const f = decodeDeviceFeatureReply(p);
  const ops = [f.get && 'GET', f.set && 'SET', f.probe && 'PROBE'].filter(Boolean).join('|');
  const out: Record<string, TraceValue> = { feature: FEATURES[f.feature] ?? f.feature, ops, argsz: f.argsz };
  if (f.probe || f.data.length === 0) return out;
  switch (f.feature) {
    case DeviceFeature.MIGRATION:
      if (reply) {
        const m = decodeMigrationData(f.data);
        out.migration = [m & 1n && 'STOP_COPY', m & 2n && 'P2P', m & 4n && 'PRE_COPY'].filter(Boolean).join('|') || '0';
      }
      break;
    case DeviceFeature.MIG_DEVICE_STATE:
      if (f.data.length >= 4) {
        const s = dv(f.data).getUint32(0, true);
        out.state = STATES[s] ?? s;
      }
      break;
    case DeviceFeature.DMA_LOGGING_START:
    case DeviceFeature.DMA_LOGGING_STOP: {
      const c = decodeDmaLoggingControl(f.data);
      out.pageSize = Number(c.pageSize);
      out.ranges = c.ranges.map((r) => `${hex(r.iova)}+${hex(r.length)}`);
      break;
    }
    case DeviceFeature.DMA_LOGGING_REPORT: {
      if (reply && f.data.length > 24) {
        const r = decodeDmaLoggingReport(f.data);
        let dirty = 0;
        for (const b of r.bitmap) for (let x = b; x; x &= x - 1) dirty++;
        Object.assign(out, { iova: hex(r.iova), length: hex(r.length), pageSize: Number(r.pageSize), dirtyPages: dirty });
      } else {
        const r = decodeDmaLoggingReportRequest(f.data);
        Object.assign(out, { iova: hex(r.iova), length: hex(r.length), pageSize: Number(r.pageSize) });
      }
      break;
    }
  }
  return out;
}

/** Decoded payload of a message (lenient; `undecodable` names what went wrong). */
export function decodePayload(h: MessageHeader, p: Uint8Array, fds: number): Record<string, TraceValue> {
  const reply = isReply(h.flags);
  if (reply && h.flags & FLAG_ERROR) return p.length ? { trailing: p.length } : {};
  try {
    switch (h.command) {
      case Command.VERSION: {
        const v = decodeVersion(p);
        const out: Record<string, TraceValue> = { version: `${v.major}.${v.minor}` };
        if (v.json !== undefined) out.json = v.json;
        return out;
      }
      case Command.DMA_MAP: {
        if (reply) return {};
        const v = dv(p);
        return { address: hex(v.getBigUint64(16, true)), size: hex(v.getBigUint64(24, true)), offset: hex(v.getBigUint64(8, true)), prot: ['', 'R', 'W', 'RW'][v.getUint32(4, true) & 3] || 'none', flags: v.getUint32(4, true), fd: fds > 0 };
      }
      case Command.DMA_UNMAP: {
        const v = dv(p);
        const flags = v.getUint32(4, true);
        return flags & DmaUnmapFlags.ALL ? { all: true, flags } : { address: hex(v.getBigUint64(8, true)), size: hex(v.getBigUint64(16, true)), flags };
      }
      case Command.DEVICE_GET_INFO: {
        if (!reply) return { argsz: dv(p).getUint32(0, true) };
        const i = decodeDeviceInfoReply(p);
        return { flags: i.flags, regions: i.numRegions, irqs: i.numIrqs };
      }
      case Command.DEVICE_GET_REGION_INFO: {
        if (!reply) return { index: dv(p).getUint32(8, true), argsz: dv(p).getUint32(0, true) };
        const r = decodeRegionInfoReply(p);
        const flags = [r.flags & 1 && 'R', r.flags & 2 && 'W', r.flags & 4 && 'MMAP', r.flags & 8 && 'CAPS'].filter(Boolean).join('|') || '0';
        const out: Record<string, TraceValue> = { index: r.index, size: hex(r.size), flags, argsz: r.argsz };
        if (r.offset) out.offset = hex(r.offset);
        const caps = r.caps.map((c) => (isSparseMmapCap(c) ? `sparse[${c.areas.map((a) => `${hex(a.offset)}+${hex(a.size)}`).join(',')}]` : isTypeCap(c) ? `type ${c.type}/${c.subtype}` : `cap ${c.id}`));
        if (caps.length) out.caps = caps;
        return out;
      }
      case Command.DEVICE_GET_IRQ_INFO: {
        if (!reply) return { index: IRQ[dv(p).getUint32(8, true)] ?? dv(p).getUint32(8, true) };
        const q = decodeIrqInfoReply(p);
        const flags = [q.flags & 1 && 'EVENTFD', q.flags & 2 && 'MASKABLE', q.flags & 4 && 'AUTOMASKED', q.flags & 8 && 'NORESIZE'].filter(Boolean).join('|') || '0';
        return { index: IRQ[q.index] ?? q.index, count: q.count, flags };
      }
      case Command.DEVICE_SET_IRQS: {
        if (reply) return {};
        const v = dv(p);
        const index = v.getUint32(8, true);
        const out: Record<string, TraceValue> = { index: IRQ[index] ?? index, start: v.getUint32(12, true), count: v.getUint32(16, true), op: setIrqsFlags(v.getUint32(4, true)) };
        if (p.length > 20) out.data = peek(p.subarray(20), 16);
        return out;
      }
      case Command.REGION_READ:
        return regionAccess(p, reply);
      case Command.REGION_WRITE:
        return regionAccess(p, !reply);
      case Command.DMA_READ:
        return dmaAccess(p, reply);
      case Command.DMA_WRITE:
        return dmaAccess(p, !reply);
      case Command.REGION_WRITE_MULTI:
        return reply ? { written: Number(dv(p).getBigUint64(0, true)) } : { entries: Number(dv(p).getBigUint64(0, true)) };
      case Command.DEVICE_FEATURE:
        return feature(p, reply);
      case Command.MIG_DATA_READ:
      case Command.MIG_DATA_WRITE:
        if (p.length === 0) return {};
        return { bytes: dv(p).getUint32(4, true), argsz: dv(p).getUint32(0, true) };
      case Command.DEVICE_GET_REGION_IO_FDS: {
        const v = dv(p);
        return reply ? { index: v.getUint32(8, true), count: v.getUint32(12, true), argsz: v.getUint32(0, true) } : { index: v.getUint32(8, true), argsz: v.getUint32(0, true) };
      }
      case CMD_X_VM_INTERRUPT: {
        const v = decodeVmInterrupt(p);
        return { index: IRQ[v.index] ?? v.index, vector: v.vector };
      }
      default:
        return p.length ? { bytes: p.length, head: peek(p, 16) } : {};
    }
  } catch (e) {
    return { undecodable: (e as Error).message };
  }
}

/** Builds the trace event of a message (latency is filled in by the proxy). */
export function traceEvent(
  h: MessageHeader,
  payload: Uint8Array,
  fds: number,
  where: { t: number; session: number; socket: 'main' | 'twin'; dir: TraceDirection },
): TraceEvent {
  const reply = isReply(h.flags);
  const e: TraceEvent = {
    ...where,
    id: h.msgId,
    cmd: h.command,
    name: shortName(h.command),
    kind: reply ? 'reply' : 'command',
    flags: h.flags,
    noReply: !reply && (h.flags & FLAG_NO_REPLY) !== 0,
    size: h.msgSize,
    fds,
    payload: decodePayload(h, payload, fds),
  };
  if (reply && h.flags & FLAG_ERROR) e.error = errnoName(h.error);
  return e;
}
