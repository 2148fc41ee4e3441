// An `lspci -vv`-style rendering of a decoded configuration space.

import type { DecodedCapability, DecodedConfigSpace, DecodedExtendedCapability } from './decoded.js';

const flag = (name: string, on: boolean): string => `${name}${on ? '+' : '-'}`;
const hex = (v: number | bigint, width: number): string => v.toString(16).padStart(width, '0');

/** lspci's size notation: 8, 4K, 1M, 2G. */
export function formatSize(size: bigint | number): string {
  let s = BigInt(size);
  const units = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
  let u = 0;
  while (s !== 0n && s % 1024n === 0n && u < units.length - 1) {
    s /= 1024n;
    u++;
  }
  return `${s}${units[u]}`;
}

const LINK_SPEEDS: Record<number, string> = { 1: '2.5GT/s', 2: '5GT/s', 3: '8GT/s', 4: '16GT/s', 5: '32GT/s', 6: '64GT/s' };
const linkSpeed = (s: number): string => LINK_SPEEDS[s] ?? `unknown (${s})`;

function formatCap(c: DecodedCapability, lines: string[]): void {
  const at = `\tCapabilities: [${hex(c.offset, 2)}]`;
  switch (c.kind) {
    case 'pm': {
      lines.push(`${at} Power Management version ${c.version}`);
      const pme = ['D0', 'D1', 'D2', 'D3hot', 'D3cold'].map((n, i) => flag(n, (c.pmeSupport & (1 << i)) !== 0)).join(',');
      const aux = [0, 55, 100, 160, 220, 270, 320, 375][c.auxCurrent];
      lines.push(`\t\tFlags: ${flag('PMEClk', c.pmeClock)} ${flag('DSI', c.dsi)} ${flag('D1', c.d1)} ${flag('D2', c.d2)} AuxCurrent=${aux}mA PME(${pme})`);
      lines.push(
        `\t\tStatus: D${c.powerState === 3 ? '3hot' : c.powerState} ${flag('NoSoftRst', c.noSoftReset)} ${flag('PME-Enable', c.pmeEnable)} DSel=${c.dataSelect} DScale=${c.dataScale} ${flag('PME', c.pmeStatus)}`,
      );
      break;
    }
    case 'msi':
      lines.push(
        `${at} MSI: ${flag('Enable', c.enabled)} Count=${c.enabledVectors}/${c.capableVectors} ${flag('Maskable', c.perVectorMasking)} ${flag('64bit', c.address64)}`,
      );
      lines.push(`\t\tAddress: ${hex(c.address, c.address64 ? 16 : 8)}  Data: ${hex(c.data, 4)}`);
      if (c.perVectorMasking) lines.push(`\t\tMasking: ${hex(c.maskBits ?? 0, 8)}  Pending: ${hex(c.pendingBits ?? 0, 8)}`);
      break;
    case 'msix':
      lines.push(`${at} MSI-X: ${flag('Enable', c.enabled)} Count=${c.tableSize} ${flag('Masked', c.functionMask)}`);
      lines.push(`\t\tVector table: BAR=${c.tableBar} offset=${hex(c.tableOffset, 8)}`);
      lines.push(`\t\tPBA: BAR=${c.pbaBar} offset=${hex(c.pbaOffset, 8)}`);
      break;
    case 'pcie':
      lines.push(`${at} Express (v${c.version}) ${c.deviceTypeName}, MSI ${hex(c.interruptMessageNumber, 2)}`);
      lines.push(`\t\tDevCap:\tMaxPayload ${c.maxPayloadSupported} bytes`);
      lines.push(`\t\t\t${flag('ExtTag', c.extendedTagSupported)} ${flag('RBE', c.roleBasedErrorReporting)} ${flag('FLReset', c.flrCapable)}`);
      lines.push(
        `\t\tDevCtl:\t${flag('CorrErr', c.correctableErrorReporting)} ${flag('NonFatalErr', c.nonFatalErrorReporting)} ${flag('FatalErr', c.fatalErrorReporting)} ${flag('UnsupReq', c.unsupportedRequestReporting)}`,
      );
      lines.push(`\t\t\t${flag('RlxdOrd', c.relaxedOrdering)} ${flag('ExtTag', c.extendedTag)} ${flag('NoSnoop', c.noSnoop)} ${flag('FLReset', c.initiateFlr)}`);
      lines.push(`\t\t\tMaxPayload ${c.maxPayload} bytes, MaxReadReq ${c.maxReadRequest} bytes`);
      lines.push(
        `\t\tDevSta:\t${flag('CorrErr', (c.devSta & 1) !== 0)} ${flag('NonFatalErr', (c.devSta & 2) !== 0)} ${flag('FatalErr', (c.devSta & 4) !== 0)} ${flag('UnsupReq', (c.devSta & 8) !== 0)} ${flag('AuxPwr', (c.devSta & 0x10) !== 0)} ${flag('TransPend', (c.devSta & 0x20) !== 0)}`,
      );
      lines.push(`\t\tLnkCap:\tPort #${c.linkCap >>> 24}, Speed ${linkSpeed(c.maxLinkSpeed)}, Width x${c.maxLinkWidth}`);
      lines.push(`\t\tLnkSta:\tSpeed ${linkSpeed(c.linkSpeed)}, Width x${c.linkWidth}`);
      break;
    case 'vendor':
      lines.push(`${at} Vendor Specific Information: Len=${hex(c.length, 2)} <?>`);
      break;
    case 'unknown':
      lines.push(`${at} ${c.name ?? `Capability ID ${hex(c.id, 2)}`} <?>`);
      break;
  }
}

function formatExtCap(c: DecodedExtendedCapability, lines: string[]): void {
  const at = `\tCapabilities: [${hex(c.offset, 3)} v${c.version}]`;
  switch (c.kind) {
    case 'dsn': {
      const parts: string[] = [];
      for (let i = 7; i >= 0; i--) parts.push(hex((c.serial >> BigInt(8 * i)) & 0xffn, 2));
      lines.push(`${at} Device Serial Number ${parts.join('-')}`);
      break;
    }
    case 'vendor':
      lines.push(`${at} Vendor Specific Information: ID=${hex(c.vsecId, 4)} Rev=${c.vsecRev} Len=${hex(c.vsecLength, 3)} <?>`);
      break;
    case 'unknown':
      lines.push(`${at} ${c.name ?? `Extended Capability ID ${hex(c.id, 4)}`} <?>`);
      break;
  }
}

/** Human-readable text in the style of `lspci -vv`, one line per item. */
export function formatConfigSpace(d: DecodedConfigSpace): string {
  const lines: string[] = [];
  const cc = d.classCode;
  lines.push(
    `Device ${hex(d.vendorId, 4)}:${hex(d.deviceId, 4)} class ${hex(cc.base, 2)}${hex(cc.sub, 2)} prog-if ${hex(cc.progIf, 2)} (rev ${hex(d.revision, 2)})`,
  );
  if (d.headerType === 0) lines.push(`\tSubsystem: ${hex(d.subsystemVendorId, 4)}:${hex(d.subsystemId, 4)}`);
  else lines.push(`\tHeader type ${d.headerType}`);
  const c = d.command;
  lines.push(
    `\tControl: ${flag('I/O', (c & 1) !== 0)} ${flag('Mem', (c & 2) !== 0)} ${flag('BusMaster', (c & 4) !== 0)} ${flag('SpecCycle', (c & 8) !== 0)} ${flag('MemWINV', (c & 0x10) !== 0)} ${flag('VGASnoop', (c & 0x20) !== 0)} ${flag('ParErr', (c & 0x40) !== 0)} ${flag('Stepping', (c & 0x80) !== 0)} ${flag('SERR', (c & 0x100) !== 0)} ${flag('FastB2B', (c & 0x200) !== 0)} ${flag('DisINTx', (c & 0x400) !== 0)}`,
  );
  const s = d.status;
  const devsel = ['fast', 'medium', 'slow', '??'][(s >> 9) & 3];
  lines.push(
    `\tStatus: ${flag('Cap', (s & 0x10) !== 0)} ${flag('66MHz', (s & 0x20) !== 0)} ${flag('UDF', (s & 0x40) !== 0)} ${flag('FastB2B', (s & 0x80) !== 0)} ${flag('ParErr', (s & 0x100) !== 0)} DEVSEL=${devsel} ${flag('>TAbort', (s & 0x800) !== 0)} ${flag('<TAbort', (s & 0x1000) !== 0)} ${flag('<MAbort', (s & 0x2000) !== 0)} ${flag('>SERR', (s & 0x4000) !== 0)} ${flag('<PERR', (s & 0x8000) !== 0)} ${flag('INTx', (s & 8) !== 0)}`,
  );
  if (d.interruptPin !== 0) {
    const pin = d.interruptPin <= 4 ? String.fromCharCode(0x40 + d.interruptPin) : `?${d.interruptPin}`;
    lines.push(`\tInterrupt: pin ${pin} routed to IRQ ${d.interruptLine}`);
  }
  for (const b of d.bars) {
    const size = b.size !== undefined ? ` [size=${formatSize(b.size)}]` : '';
    if (b.kind === 'io') {
      const at = b.address !== 0n ? ` at ${hex(b.address, 4)}` : '';
      const dis = b.address !== 0n && (c & 1) === 0 ? ' [disabled]' : '';
      lines.push(`\tRegion ${b.index}: I/O ports${at}${dis}${size}`);
    } else {
      const bits = b.kind === 'mem64' ? '64-bit' : b.kind === 'mem1m' ? 'low-1M' : b.kind === 'reserved' ? 'type 3' : '32-bit';
      const at = b.address !== 0n ? ` at ${hex(b.address, 8)}` : '';
      const dis = b.address !== 0n && (c & 2) === 0 ? ' [disabled]' : '';
      lines.push(`\tRegion ${b.index}: Memory${at} (${bits}, ${b.prefetchable ? 'prefetchable' : 'non-prefetchable'})${dis}${size}`);
    }
  }
  if (d.rom) {
    const at = d.rom.address !== 0 ? ` at ${hex(d.rom.address, 8)}` : '';
    const size = d.rom.size !== undefined ? ` [size=${formatSize(d.rom.size)}]` : '';
    lines.push(`\tExpansion ROM${at}${d.rom.enabled ? '' : ' [disabled]'}${size}`);
  }
  for (const cap of d.capabilities) formatCap(cap, lines);
  for (const cap of d.extendedCapabilities) formatExtCap(cap, lines);
  for (const w of d.warnings) lines.push(`\t!! ${w}`);
  return lines.join('\n') + '\n';
}
