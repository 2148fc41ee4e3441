// What the suite learns about the device before the first case: the
// answers of one well-behaved session (VERSION, GET_INFO, every region and
// IRQ index, config space, migration support). Cases use it to pick regions
// and vectors that exist; a server that cannot even answer these fails
// discovery and the run stops there.
import { DeviceFeature, DeviceFeatureFlags, RegionInfoFlags } from '../../src/protocol/constants.js';
import { decodeMigrationData } from '../../src/protocol/device-feature.js';
import type { DeviceInfo } from '../../src/protocol/device-info.js';
import type { IrqInfo } from '../../src/protocol/irq-info.js';
import type { RegionInfo } from '../../src/protocol/region-info.js';
import type { VersionCapabilities } from '../../src/protocol/version.js';
import { answer, closeFds, feature, featureData, getInfo, irqInfo, okRead, regionInfo } from './ops.js';
import { isError, type RawClient } from './raw-client.js';

/** A BAR as the suite sees it. */
export interface BarProfile {
  index: number;
  size: bigint;
  io: boolean;
  is64: boolean;
  prefetch: boolean;
}

export interface DeviceProfile {
  caps: VersionCapabilities;
  info: DeviceInfo;
  /** Full region info per index (0..num_regions-1). */
  regions: RegionInfo[];
  irqs: IrqInfo[];
  /** Config space as first read (256 or 4096 bytes). */
  config: Uint8Array;
  bars: BarProfile[];
  /** MIGRATION feature flags, or null when the device does not migrate. */
  migration: bigint | null;
  /** How the server answered GET MIGRATION when it does not migrate. */
  migrationAnswer: string;
}

/** Smallest readable, non-config region with size ≥ 4 (for access cases), or the config space. */
export function accessRegion(p: DeviceProfile): { index: number; size: bigint } {
  for (const r of p.regions) {
    if (r.index !== 7 && r.size >= 4n && r.flags & RegionInfoFlags.READ) return { index: r.index, size: r.size };
  }
  return { index: 7, size: p.regions[7]?.size ?? 256n };
}

/** The first IRQ index with vectors and EVENTFD, preferring MSI, then INTx, MSI-X. */
export function irqTarget(p: DeviceProfile): { index: number; count: number } | null {
  for (const i of [1, 0, 2]) {
    const q = p.irqs[i];
    if (q && q.count > 0) return { index: i, count: q.count };
  }
  return null;
}

export async function discover(c: RawClient): Promise<DeviceProfile> {
  const caps = c.serverCaps!;
  const info = await getInfo(c);
  const regions: RegionInfo[] = [];
  for (let i = 0; i < Math.min(info.numRegions, 64); i++) {
    const r = await regionInfo(c, i);
    closeFds(r.fds);
    regions.push(r.info);
  }
  const irqs: IrqInfo[] = [];
  for (let i = 0; i < Math.min(info.numIrqs, 16); i++) irqs.push(await irqInfo(c, i));
  const cfgSize = Number(regions[7]?.size ?? 256n);
  const config = (await okRead(c, 7, 0n, Math.min(cfgSize, 4096))).slice();
  const dv = new DataView(config.buffer);
  const bars: BarProfile[] = [];
  for (let i = 0; i < 6; i++) {
    const size = regions[i]?.size ?? 0n;
    if (size === 0n) continue;
    const lo = dv.getUint32(0x10 + 4 * i, true);
    const io = (lo & 1) === 1;
    bars.push({ index: i, size, io, is64: !io && (lo & 6) === 4, prefetch: !io && (lo & 8) !== 0 });
  }
  let migration: bigint | null = null;
  const m = await feature(c, DeviceFeature.MIGRATION, DeviceFeatureFlags.GET, new Uint8Array(0), 16);
  let migrationAnswer = answer(m);
  if (!isError(m)) {
    try {
      migration = decodeMigrationData(featureData(m));
    } catch (e) {
      migrationAnswer = `undecodable (${(e as Error).message})`;
    }
  }
  return { caps, info, regions, irqs, config, bars, migration, migrationAnswer };
}
