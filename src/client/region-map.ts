// mmapping a device region the server handed an fd for: every sparse area
// becomes a shared view of the device's memory.
import { native } from '../native/binding.js';
import { RegionInfoFlags } from '../protocol/constants.js';
import { ClientError, ClientErrorCode, invalidArg } from './errors.js';
import type { ClientRegionInfo, MappedArea, MappedRegion } from './types.js';

/**
 * Maps the areas of region `index` from `fd` (which the caller keeps and
 * closes). `onUnmap` runs when the returned region's unmap() is called.
 */
export function mmapRegion(index: number, info: ClientRegionInfo, fd: number | null, onUnmap: (r: MappedRegion) => void): MappedRegion {
  if (!(info.flags & RegionInfoFlags.MMAP) || fd === null) {
    throw new ClientError(ClientErrorCode.NOT_MAPPABLE, `region ${index} is not mappable (flags 0x${info.flags.toString(16)}${fd === null ? ', no fd' : ''})`);
  }
  const areas = info.mmapAreas.length > 0 ? info.mmapAreas : [{ offset: 0n, size: info.size }];
  const prot = native.PROT_READ | (info.flags & RegionInfoFlags.WRITE ? native.PROT_WRITE : 0);
  const buffers: ArrayBuffer[] = [];
  const mapped: MappedArea[] = [];
  try {
    for (const a of areas) {
      if (a.size === 0n) continue;
      if (a.size > 0xffffffffn) throw invalidArg(`region ${index}: area of ${a.size} bytes too large to map at once`);
      const ab = native.mmap(fd, info.offset + a.offset, Number(a.size), prot);
      buffers.push(ab);
      mapped.push({ offset: Number(a.offset), size: Number(a.size), bytes: new Uint8Array(ab) });
    }
  } catch (e) {
    for (const ab of buffers) native.munmap(ab);
    throw e;
  }
  info.fd = null;
  const region: MappedRegion = {
    index,
    info,
    areas: mapped,
    areaAt: (offset, length = 1) => mapped.find((a) => offset >= a.offset && offset + length <= a.offset + a.size),
    unmap: () => {
      for (const ab of buffers) native.munmap(ab);
      onUnmap(region);
    },
  };
  return region;
}
