// Typed calls the cases share, built on the protocol codecs. Each returns
// the raw reply (error replies included) so a case judges it; `ok*` variants
// throw CaseFailure when the server refuses.
import { Command } from '../../src/protocol/commands.js';
import { DeviceFeature, DeviceFeatureFlags, IrqIndex, SetIrqsFlags } from '../../src/protocol/constants.js';
import { decodeDeviceFeatureReply, encodeDeviceFeatureRequest, encodeMigDeviceState, decodeMigDeviceState } from '../../src/protocol/device-feature.js';
import { decodeDeviceInfoReply, encodeDeviceInfoRequest, type DeviceInfo } from '../../src/protocol/device-info.js';
import { encodeDmaMapRequest, encodeDmaUnmapRequest } from '../../src/protocol/dma-map.js';
import { errnoName } from '../../src/protocol/errno.js';
import { decodeIrqInfoReply, encodeIrqInfoRequest, type IrqInfo } from '../../src/protocol/irq-info.js';
import { decodeMigDataReadReply, encodeMigDataReadRequest, encodeMigDataWriteRequest } from '../../src/protocol/mig-data.js';
import { encodeRegionReadRequest, encodeRegionWriteRequest } from '../../src/protocol/region-access.js';
import { decodeRegionInfoReply, encodeRegionInfoRequest, type RegionInfo } from '../../src/protocol/region-info.js';
import { encodeSetIrqsRequest } from '../../src/protocol/set-irqs.js';
import type { Message } from '../../src/transport/types.js';
import { concatBytes } from '../../src/util/bytes.js';
import { native } from '../../src/native/binding.js';
import { errnoOf, isError, type RawClient } from './raw-client.js';
import { CaseFailure } from './types.js';

/** "EINVAL" for an error reply, "success" otherwise. */
export function answer(m: Message): string {
  return isError(m) ? (m.header.error ? errnoName(m.header.error) : 'error 0') : 'success';
}

/** Throws CaseFailure when `m` is an error reply. */
export function okReply(m: Message, what: string): Message {
  if (isError(m)) throw new CaseFailure(`${what} refused with ${answer(m)}`);
  return m;
}

/** Throws CaseFailure unless `m` is an error reply; returns its errno. */
export function errReply(m: Message, what: string): number {
  if (!isError(m)) throw new CaseFailure(`${what} succeeded; an error reply was expected`);
  return errnoOf(m);
}

export async function getInfo(c: RawClient): Promise<DeviceInfo> {
  return decodeDeviceInfoReply(okReply(await c.call(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest()), 'DEVICE_GET_INFO').payload);
}

/** Region info with retry at the argsz the server asks for; fds are returned, not closed. */
export async function regionInfo(c: RawClient, index: number): Promise<{ info: RegionInfo; fds: number[]; first: RegionInfo }> {
  const m = okReply(await c.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ index, argsz: 32 })), `REGION_INFO ${index}`);
  const first = decodeRegionInfoReply(m.payload);
  if (first.argsz <= 32) return { info: first, fds: m.fds, first };
  c.release(m);
  const m2 = okReply(await c.call(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ index, argsz: first.argsz })), `REGION_INFO ${index} argsz ${first.argsz}`);
  return { info: decodeRegionInfoReply(m2.payload), fds: m2.fds, first };
}

export async function irqInfo(c: RawClient, index: number): Promise<IrqInfo> {
  return decodeIrqInfoReply(okReply(await c.call(Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest({ index })), `IRQ_INFO ${index}`).payload);
}

export function regionRead(c: RawClient, region: number, offset: bigint, count: number): Promise<Message> {
  return c.call(Command.REGION_READ, encodeRegionReadRequest({ region, offset, count }));
}

export function regionWrite(c: RawClient, region: number, offset: bigint, data: Uint8Array): Promise<Message> {
  return c.call(Command.REGION_WRITE, encodeRegionWriteRequest({ region, offset, count: data.length, data }));
}

/** Data bytes of a successful REGION_READ reply. */
export async function okRead(c: RawClient, region: number, offset: bigint, count: number): Promise<Uint8Array> {
  const m = okReply(await regionRead(c, region, offset, count), `REGION_READ region ${region} +0x${offset.toString(16)} count ${count}`);
  if (m.payload.length !== 16 + count) throw new CaseFailure(`REGION_READ reply has ${m.payload.length - 16} data bytes for count ${count}`);
  return m.payload.subarray(16);
}

export async function okWrite(c: RawClient, region: number, offset: bigint, data: Uint8Array): Promise<void> {
  okReply(await regionWrite(c, region, offset, data), `REGION_WRITE region ${region} +0x${offset.toString(16)} count ${data.length}`);
}

export async function cfgRead32(c: RawClient, off: number): Promise<number> {
  const b = await okRead(c, 7, BigInt(off), 4);
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

export async function cfgWrite32(c: RawClient, off: number, v: number): Promise<void> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  await okWrite(c, 7, BigInt(off), b);
}

export interface SetIrqsArgs {
  flags: number;
  index: number;
  start: number;
  count: number;
  data?: Uint8Array;
  argsz?: number;
}

export function setIrqs(c: RawClient, a: SetIrqsArgs, fds?: number[]): Promise<Message> {
  return c.call(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest(a), fds ? { fds } : {});
}

export const TRIGGER_EVENTFD = SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER;
export const TRIGGER_NONE = SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER;
export const TRIGGER_BOOL = SetIrqsFlags.DATA_BOOL | SetIrqsFlags.ACTION_TRIGGER;
export const MASK_NONE = SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_MASK;
export const UNMASK_NONE = SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_UNMASK;
export const IRQ_NAMES = ['INTx', 'MSI', 'MSI-X', 'ERR', 'REQ'];
export { IrqIndex };

export function dmaMap(c: RawClient, a: { address: bigint; size: bigint; offset?: bigint; flags?: number; argsz?: number }, fd?: number): Promise<Message> {
  return c.call(Command.DMA_MAP, encodeDmaMapRequest({ argsz: a.argsz ?? 32, flags: a.flags ?? 3, offset: a.offset ?? 0n, address: a.address, size: a.size }), fd === undefined ? {} : { fds: [fd] });
}

export function dmaUnmap(c: RawClient, a: { address: bigint; size: bigint; flags?: number; argsz?: number }): Promise<Message> {
  return c.call(Command.DMA_UNMAP, encodeDmaUnmapRequest({ argsz: a.argsz ?? 24, flags: a.flags ?? 0, address: a.address, size: a.size }));
}

export function feature(c: RawClient, feature: number, ops: number, data: Uint8Array = new Uint8Array(0), argsz?: number): Promise<Message> {
  const req = argsz === undefined ? { flags: feature | ops, data } : { flags: feature | ops, data, argsz };
  return c.call(Command.DEVICE_FEATURE, encodeDeviceFeatureRequest(req));
}

/** Data of a successful DEVICE_FEATURE GET. */
export function featureData(m: Message): Uint8Array {
  return decodeDeviceFeatureReply(m.payload).data;
}

export async function getState(c: RawClient): Promise<number> {
  const m = okReply(await feature(c, DeviceFeature.MIG_DEVICE_STATE, DeviceFeatureFlags.GET, new Uint8Array(0), 16), 'GET MIG_DEVICE_STATE');
  return decodeMigDeviceState(featureData(m)).deviceState;
}

export function setState(c: RawClient, state: number): Promise<Message> {
  return feature(c, DeviceFeature.MIG_DEVICE_STATE, DeviceFeatureFlags.SET, encodeMigDeviceState({ deviceState: state, dataFd: -1 }));
}

export function migRead(c: RawClient, size: number): Promise<Message> {
  return c.call(Command.MIG_DATA_READ, encodeMigDataReadRequest({ size }));
}

export function migWrite(c: RawClient, data: Uint8Array): Promise<Message> {
  return c.call(Command.MIG_DATA_WRITE, encodeMigDataWriteRequest(data));
}

/** Reads the migration stream until a short or empty read (both ends are accepted); bounded by `limit` bytes. */
export async function readStream(c: RawClient, chunk: number, limit = 256 * 1048576): Promise<{ data: Uint8Array; ending: string }> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const m = okReply(await migRead(c, chunk), 'MIG_DATA_READ');
    const r = decodeMigDataReadReply(m.payload);
    if (r.size > chunk) throw new CaseFailure(`MIG_DATA_READ returned ${r.size} bytes for ${chunk} asked`);
    parts.push(r.data.slice());
    total += r.size;
    if (r.size === 0) return { data: concatBytes(parts), ending: 'an empty read' };
    if (r.size < chunk) return { data: concatBytes(parts), ending: 'a short read' };
    if (total > limit) throw new CaseFailure(`migration stream longer than ${limit} bytes`);
  }
}

/** A non-blocking eventfd the case owns. */
export function eventfd(): number {
  return native.eventfd(0, native.EFD_NONBLOCK);
}

/** The eventfd's counter (0 when nothing was signalled); resets it. */
export function eventfdTake(fd: number): bigint {
  const v = native.eventfdRead(fd);
  return v < 0n ? 0n : v;
}

/** Waits up to `ms` for the eventfd to be signalled; returns the count seen. */
export async function eventfdWait(fd: number, ms: number): Promise<bigint> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = eventfdTake(fd);
    if (v > 0n || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      native.close(fd);
    } catch {
      // already closed
    }
  }
}

/** A memfd of `size` bytes the case owns (for DMA_MAP with an fd). */
export function memfd(size: number): number {
  const fd = native.memfdCreate('vfio-user-check', false);
  native.ftruncate(fd, size);
  return fd;
}

/**
 * DMA_MAP of a fresh memfd of `fileSize` bytes (default: the map's size);
 * the fd is closed once sent, whatever the answer, which is returned.
 */
export async function dmaMapMemfd(c: RawClient, a: { address: bigint; size: bigint; offset?: bigint }, fileSize = Number(a.size)): Promise<Message> {
  const fd = memfd(fileSize);
  try {
    return await dmaMap(c, a, fd);
  } finally {
    closeFds([fd]);
  }
}

export const u32le = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
};
