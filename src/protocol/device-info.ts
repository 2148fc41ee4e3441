// DEVICE_GET_INFO (4): request and reply are `struct vfio_device_info`,
// 16 bytes: u32 argsz, u32 flags, u32 num_regions, u32 num_irqs (§2.4).
import { einval } from './errors.js';
import { need, u32, viewOf, Writer } from './wire.js';

/** Bytes of a GET_INFO request and reply. */
export const DEVICE_INFO_SIZE = 16;

/** GET_INFO request: only `argsz`. */
export interface DeviceInfoRequest {
  /** Largest reply the client accepts; ≥ 16. Defaults to 16. */
  argsz?: number;
}

/** GET_INFO reply: device flags and the number of regions and interrupt indexes. */
export interface DeviceInfo {
  argsz: number;
  /** DeviceInfoFlags: RESET 0x1, PCI 0x2. */
  flags: number;
  numRegions: number;
  numIrqs: number;
}

/** 16 bytes: argsz then zeros. */
export function encodeDeviceInfoRequest(r: DeviceInfoRequest = {}): Uint8Array {
  return new Writer(DEVICE_INFO_SIZE).u32(0, 'argsz', r.argsz ?? DEVICE_INFO_SIZE).buf;
}

/** Short payload or argsz < 16 → EINVAL. The other request fields are ignored. */
export function decodeDeviceInfoRequest(payload: Uint8Array): Required<DeviceInfoRequest> {
  need(payload, DEVICE_INFO_SIZE, 'DEVICE_GET_INFO');
  const argsz = u32(viewOf(payload), 0);
  if (argsz < DEVICE_INFO_SIZE) throw einval(`DEVICE_GET_INFO argsz ${argsz} < 16`);
  return { argsz };
}

/** 16-byte reply. */
export function encodeDeviceInfoReply(r: DeviceInfo): Uint8Array {
  return new Writer(DEVICE_INFO_SIZE)
    .u32(0, 'argsz', r.argsz)
    .u32(4, 'flags', r.flags)
    .u32(8, 'numRegions', r.numRegions)
    .u32(12, 'numIrqs', r.numIrqs).buf;
}

/** Short payload → EINVAL. */
export function decodeDeviceInfoReply(payload: Uint8Array): DeviceInfo {
  need(payload, DEVICE_INFO_SIZE, 'DEVICE_GET_INFO reply');
  const dv = viewOf(payload);
  return { argsz: u32(dv, 0), flags: u32(dv, 4), numRegions: u32(dv, 8), numIrqs: u32(dv, 12) };
}
