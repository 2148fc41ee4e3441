// DEVICE_SET_IRQS (8) (§2.8): `struct vfio_irq_set`, 20 bytes + data.
//   0 u32 argsz | 4 u32 flags | 8 u32 index | 12 u32 start | 16 u32 count
//   20 u8[count] data (DATA_BOOL only)
// fds (DATA_EVENTFD) travel as ancillary data. The reply has no payload.
import { einval } from './errors.js';
import {
  IrqIndex,
  NUM_IRQS,
  SET_IRQS_ACTION_TYPE_MASK,
  SET_IRQS_DATA_TYPE_MASK,
  SET_IRQS_FLAGS_MASK,
  SetIrqsFlags,
} from './constants.js';
import { U32_MAX } from './ranges.js';
import { checkBytes, copyBytes, need, u32, viewOf, Writer } from './wire.js';

/** Bytes of a SET_IRQS request before its data. */
export const SET_IRQS_HEADER_SIZE = 20;

/** SET_IRQS request: index, vectors `start..start+count-1`, flags, and BOOL data (eventfds travel as fds). */
export interface SetIrqsRequest {
  /** Size of the request payload including data. Defaults to 20 + data.length. */
  argsz?: number;
  flags: number;
  index: number;
  start: number;
  count: number;
  /** Bytes after the 20-byte header (one u8 per vector with DATA_BOOL). */
  data?: Uint8Array;
}

/** Encodes a SET_IRQS request. */
export function encodeSetIrqsRequest(r: SetIrqsRequest): Uint8Array {
  const data = r.data ? checkBytes('data', r.data) : new Uint8Array(0);
  return new Writer(SET_IRQS_HEADER_SIZE + data.length)
    .u32(0, 'argsz', r.argsz ?? SET_IRQS_HEADER_SIZE + data.length)
    .u32(4, 'flags', r.flags)
    .u32(8, 'index', r.index)
    .u32(12, 'start', r.start)
    .u32(16, 'count', r.count)
    .bytes(SET_IRQS_HEADER_SIZE, data).buf;
}

/**
 * Syntax only: payload < 20 or argsz < 20 → EINVAL. `data` is every byte
 * after the header (a copy). Call validateSetIrqs for the semantic rules.
 */
export function decodeSetIrqsRequest(payload: Uint8Array): Required<SetIrqsRequest> {
  need(payload, SET_IRQS_HEADER_SIZE, 'DEVICE_SET_IRQS');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  if (argsz < SET_IRQS_HEADER_SIZE) throw einval(`DEVICE_SET_IRQS argsz ${argsz} < 20`);
  return {
    argsz,
    flags: u32(dv, 4),
    index: u32(dv, 8),
    start: u32(dv, 12),
    count: u32(dv, 16),
    data: copyBytes(payload, SET_IRQS_HEADER_SIZE),
  };
}

/** The reply carries no payload. */
export function encodeSetIrqsReply(): Uint8Array {
  return new Uint8Array(0);
}
/** Checks a SET_IRQS reply is empty (else EINVAL). */
export function decodeSetIrqsReply(payload: Uint8Array): void {
  need(payload, 0, 'DEVICE_SET_IRQS reply');
  if (payload.length !== 0) throw einval(`DEVICE_SET_IRQS reply has ${payload.length} unexpected bytes`);
}

const oneBit = (v: number): boolean => v !== 0 && (v & (v - 1)) === 0;

/**
 * Semantic checks of a SET_IRQS request, libvfio-user's list (all EINVAL):
 * index < number of IRQ types (irqCounts.length, default 5); unknown flag
 * bits; data type and action each exactly one bit; DATA_BOOL with data
 * length ≠ count; count = 0 only as NONE|TRIGGER with start = 0; start +
 * count overflowing u32 or exceeding irqCounts[index]; ERR/REQ with an
 * action other than TRIGGER or count > 1; fds with a data type other than
 * EVENTFD; an fd count that is neither 0 nor count.
 *
 * Deliberate difference from libvfio-user: "disable all" (count 0,
 * NONE|TRIGGER) is ACCEPTED on every valid index, even one whose vector
 * count is 0. libvfio-user checks start ≥ irq_count first and so refuses it
 * there, but QEMU does send it for such indexes (e.g. at reset) and there is
 * nothing to disable, so success is the right answer.
 *
 * @param irqCounts vectors configured per IRQ index; omit to skip the
 *   per-index bounds check (only u32 overflow is then checked).
 * @param fdCount fds received with the message.
 */
export function validateSetIrqs(req: SetIrqsRequest, irqCounts?: readonly number[], fdCount = 0): void {
  const { flags, index, start, count } = req;
  const dataLen = req.data?.length ?? 0;
  const numIrqs = irqCounts ? irqCounts.length : NUM_IRQS;
  if (index >= numIrqs) throw einval(`SET_IRQS index ${index} >= ${numIrqs}`);
  if ((flags & ~SET_IRQS_FLAGS_MASK) !== 0) throw einval(`SET_IRQS unknown flags 0x${flags.toString(16)}`);
  const dataType = flags & SET_IRQS_DATA_TYPE_MASK;
  const action = flags & SET_IRQS_ACTION_TYPE_MASK;
  if (!oneBit(dataType)) throw einval('SET_IRQS needs exactly one data type');
  if (!oneBit(action)) throw einval('SET_IRQS needs exactly one action');
  if (dataType === SetIrqsFlags.DATA_BOOL && dataLen !== count) throw einval(`SET_IRQS DATA_BOOL: ${dataLen} data bytes for count ${count}`);
  if (fdCount !== 0 && dataType !== SetIrqsFlags.DATA_EVENTFD) throw einval('SET_IRQS fds without DATA_EVENTFD');
  if (fdCount !== 0 && fdCount !== count) throw einval(`SET_IRQS ${fdCount} fds for count ${count}`);
  if ((index === IrqIndex.ERR || index === IrqIndex.REQ) && (action !== SetIrqsFlags.ACTION_TRIGGER || count > 1)) {
    throw einval('SET_IRQS ERR/REQ allow only TRIGGER with count ≤ 1');
  }
  if (count === 0) {
    if (flags !== (SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER)) throw einval('SET_IRQS count 0 needs NONE|TRIGGER');
    if (start !== 0) throw einval('SET_IRQS count 0 needs start 0');
    return; // "disable all": valid even when the index has no vectors (see above).
  }
  if (start + count > U32_MAX + 1) throw einval('SET_IRQS start + count overflows');
  if (irqCounts) {
    const n = irqCounts[index] ?? 0;
    if (start >= n || start + count > n) throw einval(`SET_IRQS vectors ${start}..${start + count - 1} outside 0..${n - 1}`);
  }
}

/** What a SET_IRQS request does, as classifySetIrqs names it. */
export type SetIrqsOperation =
  | 'disable-all'
  | 'assign-eventfds'
  | 'deassign-eventfds'
  | 'trigger'
  | 'mask'
  | 'unmask'
  | 'mask-eventfd'
  | 'unmask-eventfd';

/**
 * What a validated request asks for (SPEC semantics table):
 * NONE|TRIGGER count 0 → disable-all; EVENTFD|TRIGGER with fds → assign,
 * without → deassign; NONE/BOOL|TRIGGER → trigger (loopback; with BOOL only
 * vectors whose byte is non-zero); MASK/UNMASK with NONE/BOOL → mask/unmask;
 * with EVENTFD → mask-eventfd/unmask-eventfd (e.g. QEMU's INTx resample fd).
 */
export function classifySetIrqs(req: SetIrqsRequest, fdCount = 0): SetIrqsOperation {
  const dataType = req.flags & SET_IRQS_DATA_TYPE_MASK;
  const action = req.flags & SET_IRQS_ACTION_TYPE_MASK;
  const eventfd = dataType === SetIrqsFlags.DATA_EVENTFD;
  if (action === SetIrqsFlags.ACTION_TRIGGER) {
    if (req.count === 0) return 'disable-all';
    if (eventfd) return fdCount > 0 ? 'assign-eventfds' : 'deassign-eventfds';
    return 'trigger';
  }
  if (action === SetIrqsFlags.ACTION_MASK) return eventfd ? 'mask-eventfd' : 'mask';
  return eventfd ? 'unmask-eventfd' : 'unmask';
}
