// `vfio-user probe SOCKET [--json]`: connect to any vfio-user server (ours,
// libvfio-user's samples), describe the device (regions, IRQs, config space
// decoded lspci-style) and disconnect cleanly.
import { VfioUserClient } from '../src/client/client.js';
import { describeIrqFlags, describeRegionFlags, regionName } from '../src/client/names.js';
import { decodeConfigSpace, type DecodedConfigSpace } from '../src/pci/decode.js';
import { formatConfigSpace, formatSize } from '../src/pci/format.js';
import { DeviceInfoFlags, RegionIndex, RegionInfoFlags } from '../src/protocol/constants.js';
import { errnoName } from '../src/protocol/errno.js';
import type { VersionCapabilities } from '../src/protocol/version.js';
import type { Logger } from '../src/util/logger.js';
import type { CliArgs, CliCommand, CliIo } from './types.js';

const IRQ_NAMES = ['INTx', 'MSI', 'MSI-X', 'ERR', 'REQ'];
/** Sanity caps on what a server may claim. */
const MAX_REGIONS = 64;
const MAX_IRQS = 64;

export interface ProbedRegion {
  index: number;
  name: string;
  size: bigint;
  offset: bigint;
  flags: number;
  flagNames: string[];
  mmapAreas: { offset: bigint; size: bigint }[];
  type?: { type: number; subtype: number };
  /** Set when GET_REGION_INFO failed. */
  error?: string;
}

export interface ProbedIrq {
  index: number;
  name: string;
  count: number;
  flags: number;
  flagNames: string[];
  error?: string;
}

export interface ProbeResult {
  socket: string;
  protocol: { major: number; minor: number; json: string | undefined };
  serverCapabilities: VersionCapabilities;
  device: { flags: number; flagNames: string[]; numRegions: number; numIrqs: number };
  regions: ProbedRegion[];
  irqs: ProbedIrq[];
  config: { size: number; bytes: Uint8Array; decoded: DecodedConfigSpace } | { error: string } | null;
}

function errText(e: unknown): string {
  const errno = (e as { errno?: unknown }).errno;
  if (typeof errno === 'number' && (e as { code?: unknown }).code === 'ERR_VFIO_USER_REMOTE') return errnoName(errno);
  return (e as Error)?.message ?? String(e);
}

/** Asks a connected client everything probe reports. Per-region/IRQ failures are recorded, not thrown. */
export async function probeDevice(client: VfioUserClient, socket: string): Promise<ProbeResult> {
  const info = await client.getDeviceInfo();
  const flagNames: string[] = [];
  if (info.flags & DeviceInfoFlags.RESET) flagNames.push('RESET');
  if (info.flags & DeviceInfoFlags.PCI) flagNames.push('PCI');
  if (info.flags & DeviceInfoFlags.PLATFORM) flagNames.push('PLATFORM');
  if (info.flags & DeviceInfoFlags.AMBA) flagNames.push('AMBA');
  const regions: ProbedRegion[] = [];
  for (let i = 0; i < Math.min(info.numRegions, MAX_REGIONS); i++) {
    try {
      const r = await client.getRegionInfo(i);
      regions.push({
        index: i,
        name: regionName(i),
        size: r.size,
        offset: r.offset,
        flags: r.flags,
        flagNames: describeRegionFlags(r.flags),
        mmapAreas: r.mmapAreas.map((a) => ({ offset: a.offset, size: a.size })),
        ...(r.type ? { type: r.type } : {}),
      });
    } catch (e) {
      regions.push({ index: i, name: regionName(i), size: 0n, offset: 0n, flags: 0, flagNames: [], mmapAreas: [], error: errText(e) });
    }
  }
  const irqs: ProbedIrq[] = [];
  for (let i = 0; i < Math.min(info.numIrqs, MAX_IRQS); i++) {
    const name = IRQ_NAMES[i] ?? `IRQ${i}`;
    try {
      const q = await client.getIrqInfo(i);
      irqs.push({ index: i, name, count: q.count, flags: q.flags, flagNames: describeIrqFlags(q.flags) });
    } catch (e) {
      irqs.push({ index: i, name, count: 0, flags: 0, flagNames: [], error: errText(e) });
    }
  }
  let config: ProbeResult['config'] = null;
  const cfg = regions[RegionIndex.CONFIG];
  if (cfg && !cfg.error && cfg.size > 0n && cfg.flags & RegionInfoFlags.READ) {
    const size = Number(cfg.size > 4096n ? 4096n : cfg.size);
    try {
      const bytes = await client.regionRead(RegionIndex.CONFIG, 0, size);
      const barSizes = regions.slice(0, 6).map((r) => r.size);
      const rom = regions[RegionIndex.ROM];
      const decoded = decodeConfigSpace(bytes, { barSizes, ...(rom && rom.size > 0n ? { romSize: Number(rom.size) } : {}) });
      config = { size, bytes, decoded };
    } catch (e) {
      config = { error: errText(e) };
    }
  }
  return {
    socket,
    protocol: { major: client.version.major, minor: client.version.minor, json: client.version.json },
    serverCapabilities: client.serverCaps,
    device: { flags: info.flags, flagNames, numRegions: info.numRegions, numIrqs: info.numIrqs },
    regions,
    irqs,
    config,
  };
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

function capsLine(c: VersionCapabilities): string {
  const parts = [`max_msg_fds ${c.maxMsgFds}`, `max_data_xfer_size ${c.maxDataXferSize}`];
  if (c.present.has('pgsizes')) parts.push(`pgsizes ${hex(c.pgsizes)}`);
  if (c.present.has('max_dma_maps')) parts.push(`max_dma_maps ${c.maxDmaMaps}`);
  if (c.writeMultiple) parts.push('write_multiple');
  if (c.migration) parts.push(`migration (pgsize ${c.migration.pgsize}${c.migration.maxBitmapSize !== undefined ? `, max_bitmap_size ${c.migration.maxBitmapSize}` : ''})`);
  if (c.twinSocket?.supported) parts.push('twin_socket');
  for (const k of Object.keys(c.extensions ?? {})) parts.push(k);
  return parts.join(', ');
}

/** The human-readable report. */
export function formatProbe(r: ProbeResult): string {
  const L: string[] = [];
  L.push(`vfio-user device at ${r.socket}`);
  L.push(`  Protocol: ${r.protocol.major}.${r.protocol.minor}; server: ${capsLine(r.serverCapabilities)}`);
  L.push(`  Device: flags ${r.device.flagNames.join(' ') || hex(r.device.flags)}; ${r.device.numRegions} regions, ${r.device.numIrqs} IRQ types`);
  L.push('');
  L.push('Regions:');
  for (const g of r.regions) {
    const head = `  ${String(g.index).padStart(2)} ${g.name.padEnd(7)}`;
    if (g.error) {
      L.push(`${head} error: ${g.error}`);
      continue;
    }
    if (g.size === 0n && g.flags === 0) {
      L.push(`${head} (not implemented)`);
      continue;
    }
    const flags = [g.flags & RegionInfoFlags.READ ? 'R' : '', g.flags & RegionInfoFlags.WRITE ? 'W' : '', g.flags & RegionInfoFlags.MMAP ? 'MMAP' : '']
      .filter(Boolean)
      .join(' ');
    let line = `${head} size ${hex(g.size).padEnd(10)} [${formatSize(g.size)}]`.padEnd(40) + ` flags ${flags || '-'}`;
    if (g.offset !== 0n) line += `  offset ${hex(g.offset)}`;
    if (g.type) line += `  type ${g.type.type}/${g.type.subtype}`;
    L.push(line);
    if (g.mmapAreas.length > 0) {
      L.push(`             mmap: ${g.mmapAreas.map((a) => `${hex(a.offset)}-${hex(a.offset + a.size - 1n)} [${formatSize(a.size)}]`).join(', ')}`);
    }
  }
  L.push('');
  L.push('IRQs:');
  for (const q of r.irqs) {
    const head = `  ${String(q.index).padStart(2)} ${q.name.padEnd(6)}`;
    if (q.error) L.push(`${head} error: ${q.error}`);
    else L.push(`${head} count ${String(q.count).padEnd(5)} flags ${q.flagNames.join(' ') || '-'}`);
  }
  L.push('');
  if (r.config === null) L.push('Config space: not readable');
  else if ('error' in r.config) L.push(`Config space: read failed: ${r.config.error}`);
  else {
    L.push(`Config space (${r.config.size} bytes):`);
    L.push(formatConfigSpace(r.config.decoded).replace(/\n+$/, ''));
  }
  return `${L.join('\n')}\n`;
}

/** JSON-friendly copy: bigints become numbers (or hex strings above 2^53), bytes a hex string, Sets arrays. */
export function toJsonValue(v: unknown): unknown {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (v instanceof Set) return [...v].map(toJsonValue);
  if (Array.isArray(v)) return v.map(toJsonValue);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toJsonValue(x);
    return out;
  }
  return v;
}

/** The machine-readable report (`--json`). */
export function probeJson(r: ProbeResult): unknown {
  const caps = r.serverCapabilities;
  return toJsonValue({
    socket: r.socket,
    protocol: r.protocol,
    serverCapabilities: {
      maxMsgFds: caps.maxMsgFds,
      maxDataXferSize: caps.maxDataXferSize,
      pgsizes: caps.pgsizes,
      maxDmaMaps: caps.maxDmaMaps,
      writeMultiple: caps.writeMultiple,
      twinSocket: caps.twinSocket,
      migration: caps.migration,
      extensions: caps.extensions,
      present: caps.present,
    },
    device: r.device,
    regions: r.regions,
    irqs: r.irqs,
    config:
      r.config === null
        ? null
        : 'error' in r.config
          ? { error: r.config.error }
          : {
              size: r.config.size,
              vendorId: r.config.decoded.vendorId,
              deviceId: r.config.decoded.deviceId,
              subsystemVendorId: r.config.decoded.subsystemVendorId,
              subsystemId: r.config.decoded.subsystemId,
              bytes: r.config.bytes,
              decoded: r.config.decoded,
            },
  });
}

/** Connects, probes and closes. */
export async function probe(socket: string, logger: Logger): Promise<ProbeResult> {
  const client = await VfioUserClient.connect(socket, { logger });
  try {
    return await probeDevice(client, socket);
  } finally {
    await client.close();
  }
}

const USAGE = `usage: vfio-user probe [-v] SOCKET [--json]

Connects to the vfio-user server listening on the UNIX socket SOCKET, prints
its capabilities, device info, every region (size, flags, sparse mmap areas),
the interrupt types, and the decoded PCI config space, then disconnects.

  --json   print one JSON object instead of text
`;

export const probeCommand: CliCommand = {
  name: 'probe',
  summary: 'connect to a vfio-user server and describe its device',
  usage: USAGE,
  options: { json: { type: 'boolean' } },
  positionals: ['SOCKET'],
  async run(args: CliArgs, io: CliIo): Promise<number> {
    const socket = args.positionals[0]!;
    const result = await probe(socket, io.logger);
    io.out(args.values.json === true ? `${JSON.stringify(probeJson(result), null, 2)}\n` : formatProbe(result));
    return 0;
  },
};
