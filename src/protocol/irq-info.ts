// DEVICE_GET_IRQ_INFO (7): `struct vfio_irq_info`, 16 bytes both ways:
// u32 argsz, u32 flags, u32 index, u32 count (§2.7).
import { einval } from './errors.js';
import { NUM_IRQS } from './constants.js';
import { need, u32, viewOf, Writer } from './wire.js';

/** Bytes of a GET_IRQ_INFO request and reply. */
export const IRQ_INFO_SIZE = 16;

/** GET_IRQ_INFO request: the interrupt index asked about. */
export interface IrqInfoRequest {
  /** Defaults to 16. */
  argsz?: number;
  index: number;
}

/** GET_IRQ_INFO reply: an interrupt index's flags and vector count. */
export interface IrqInfo {
  argsz: number;
  /** IrqInfoFlags: EVENTFD 0x1, MASKABLE 0x2, AUTOMASKED 0x4, NORESIZE 0x8. */
  flags: number;
  index: number;
  count: number;
}

/** Encodes a 16-byte GET_IRQ_INFO request. */
export function encodeIrqInfoRequest(r: IrqInfoRequest): Uint8Array {
  return new Writer(IRQ_INFO_SIZE).u32(0, 'argsz', r.argsz ?? IRQ_INFO_SIZE).u32(8, 'index', r.index).buf;
}

/**
 * Short payload, argsz < 16, or index ≥ `numIrqs` (default 5) → EINVAL.
 * flags and count of the request are ignored.
 */
export function decodeIrqInfoRequest(payload: Uint8Array, numIrqs: number = NUM_IRQS): Required<IrqInfoRequest> {
  need(payload, IRQ_INFO_SIZE, 'DEVICE_GET_IRQ_INFO');
  const dv = viewOf(payload);
  const argsz = u32(dv, 0);
  const index = u32(dv, 8);
  if (argsz < IRQ_INFO_SIZE) throw einval(`DEVICE_GET_IRQ_INFO argsz ${argsz} < 16`);
  if (index >= numIrqs) throw einval(`DEVICE_GET_IRQ_INFO index ${index} >= ${numIrqs}`);
  return { argsz, index };
}

/** Encodes a 16-byte GET_IRQ_INFO reply. */
export function encodeIrqInfoReply(r: IrqInfo): Uint8Array {
  return new Writer(IRQ_INFO_SIZE)
    .u32(0, 'argsz', r.argsz)
    .u32(4, 'flags', r.flags)
    .u32(8, 'index', r.index)
    .u32(12, 'count', r.count).buf;
}

/** Short payload → EINVAL. */
export function decodeIrqInfoReply(payload: Uint8Array): IrqInfo {
  need(payload, IRQ_INFO_SIZE, 'DEVICE_GET_IRQ_INFO reply');
  const dv = viewOf(payload);
  return { argsz: u32(dv, 0), flags: u32(dv, 4), index: u32(dv, 8), count: u32(dv, 12) };
}
