// Validation of a device description: IDs, class code, BARs and each
// capability's parameters. Every problem is an ERR_VFIO_USER_INVALID_DEVICE
// error naming the field.
import { VfioUserError } from '../protocol/errors.js';
import * as C from './constants.js';
import type { BarDescription, BarKind, CapabilityDescription, ClassCode, ExtendedCapabilityDescription } from './types.js';

const INVALID = 'ERR_VFIO_USER_INVALID_DEVICE';

/** An ERR_VFIO_USER_INVALID_DEVICE error about a description. */
export function invalid(msg: string): VfioUserError {
  return new VfioUserError(INVALID, `invalid PCI device description: ${msg}`);
}

/** `value` as an unsigned integer of `bits` bits, or an error naming `what`. */
export function checkUint(value: unknown, bits: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw invalid(`${what} must be an integer in [0, 2^${bits}), got ${String(value)}`);
  }
  return value;
}

/** True for a positive power of two. */
export function isPow2(n: bigint): boolean {
  return n > 0n && (n & (n - 1n)) === 0n;
}

/** A BAR after validation. */
export interface ResolvedBar {
  index: number;
  kind: BarKind;
  size: bigint;
  prefetchable: boolean;
}

/** The class code as its three bytes. */
export function normalizeClass(cc: ClassCode | number): ClassCode {
  if (typeof cc === 'number') {
    checkUint(cc, 24, 'classCode');
    return { base: cc >>> 16, sub: (cc >>> 8) & 0xff, progIf: cc & 0xff };
  }
  if (cc === null || typeof cc !== 'object') throw invalid('classCode must be a number or {base, sub, progIf}');
  return {
    base: checkUint(cc.base, 8, 'classCode.base'),
    sub: checkUint(cc.sub, 8, 'classCode.sub'),
    progIf: checkUint(cc.progIf, 8, 'classCode.progIf'),
  };
}

/** Validated BARs by index (undefined: empty). */
export function resolveBars(bars: (BarDescription | undefined)[] | undefined): (ResolvedBar | undefined)[] {
  const out: (ResolvedBar | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined];
  if (bars === undefined) return out;
  if (!Array.isArray(bars) || bars.length > 6) throw invalid('bars must be an array of at most 6 entries');
  for (let i = 0; i < bars.length; i++) {
    const b = bars[i];
    if (b === undefined || b === null) continue;
    const { kind } = b;
    if (kind !== 'io' && kind !== 'mem32' && kind !== 'mem64') throw invalid(`BAR${i}: unknown kind ${String(kind)}`);
    let size: bigint;
    if (typeof b.size === 'bigint') size = b.size;
    else if (typeof b.size === 'number' && Number.isSafeInteger(b.size)) size = BigInt(b.size);
    else throw invalid(`BAR${i}: size must be an integer`);
    if (!isPow2(size)) throw invalid(`BAR${i}: size ${size} is not a power of two`);
    const min = kind === 'io' ? 4n : 16n;
    const max = kind === 'io' ? 1n << 16n : kind === 'mem32' ? 1n << 31n : 1n << 63n;
    if (size < min) throw invalid(`BAR${i}: size ${size} is below the minimum ${min} for ${kind}`);
    if (size > max) throw invalid(`BAR${i}: size ${size} exceeds the maximum ${max} for ${kind}`);
    if (kind === 'io' && b.prefetchable) throw invalid(`BAR${i}: an I/O BAR cannot be prefetchable`);
    if (kind === 'mem64') {
      if (i % 2 !== 0) throw invalid(`BAR${i}: a 64-bit BAR must take an even index`);
      if (bars[i + 1] !== undefined && bars[i + 1] !== null) {
        throw invalid(`BAR${i}: a 64-bit BAR needs BAR${i + 1} empty`);
      }
    }
    out[i] = { index: i, kind, size, prefetchable: b.prefetchable === true };
  }
  return out;
}
/** Checks a standard capability's parameters (MSI-X against the BARs). */
export function validateCapability(c: CapabilityDescription, bars: (ResolvedBar | undefined)[]): void {
  switch (c.type) {
    case 'pm':
      if (c.version !== undefined) checkUint(c.version, 3, 'PM version');
      if (c.pmeSupport !== undefined) checkUint(c.pmeSupport, 5, 'PM pmeSupport');
      return;
    case 'msi':
      if (![1, 2, 4, 8, 16, 32].includes(c.vectors)) throw invalid(`MSI vectors must be 1, 2, 4, 8, 16 or 32, got ${c.vectors}`);
      return;
    case 'msix': {
      if (!Number.isInteger(c.tableSize) || c.tableSize < 1 || c.tableSize > 2048) {
        throw invalid(`MSI-X tableSize must be in 1..2048, got ${c.tableSize}`);
      }
      const tableBytes = BigInt(c.tableSize * C.PCI_MSIX_ENTRY_SIZE);
      const pbaBytes = BigInt(Math.ceil(c.tableSize / 64) * 8);
      const check = (bir: number, off: number, len: bigint, what: string): void => {
        checkUint(bir, 3, `MSI-X ${what} BAR`);
        if (bir > 5) throw invalid(`MSI-X ${what} BAR must be 0..5`);
        const bar = bars[bir];
        if (!bar || bar.kind === 'io') throw invalid(`MSI-X ${what} BAR${bir} must be a memory BAR`);
        checkUint(off, 32, `MSI-X ${what} offset`);
        if (off % 8 !== 0) throw invalid(`MSI-X ${what} offset must be 8-byte aligned`);
        if (BigInt(off) + len > bar.size) throw invalid(`MSI-X ${what} does not fit in BAR${bir}`);
      };
      check(c.tableBar, c.tableOffset, tableBytes, 'table');
      check(c.pbaBar, c.pbaOffset, pbaBytes, 'PBA');
      if (
        c.tableBar === c.pbaBar &&
        c.tableOffset < c.pbaOffset + Number(pbaBytes) &&
        c.pbaOffset < c.tableOffset + Number(tableBytes)
      ) {
        throw invalid('MSI-X table and PBA overlap');
      }
      return;
    }
    case 'pcie':
      if (c.deviceType !== undefined && c.deviceType !== 0 && c.deviceType !== 9) {
        throw invalid('PCIe deviceType must be 0 (endpoint) or 9 (RC integrated endpoint)');
      }
      if (c.maxPayloadSupported !== undefined && (checkUint(c.maxPayloadSupported, 3, 'maxPayloadSupported') > 5)) {
        throw invalid('maxPayloadSupported must be 0..5');
      }
      if (c.linkSpeed !== undefined && (checkUint(c.linkSpeed, 4, 'linkSpeed') < 1 || c.linkSpeed > 6)) {
        throw invalid('linkSpeed must be 1..6');
      }
      if (c.linkWidth !== undefined && (checkUint(c.linkWidth, 6, 'linkWidth') < 1 || c.linkWidth > 32)) {
        throw invalid('linkWidth must be 1..32');
      }
      return;
    case 'vendor':
      if (!(c.data instanceof Uint8Array)) throw invalid('vendor capability data must be a Uint8Array');
      if (c.data.length > 253) throw invalid('vendor capability data is longer than 253 bytes');
      if (c.writable instanceof Uint8Array && c.writable.length !== c.data.length) {
        throw invalid('vendor capability writable mask must have the length of data');
      }
      return;
    default:
      throw invalid(`unknown capability type ${String((c as { type: unknown }).type)}`);
  }
}

/** Checks an extended capability's parameters. */
export function validateExtCapability(c: ExtendedCapabilityDescription): void {
  switch (c.type) {
    case 'dsn':
      if (typeof c.serial !== 'bigint' || c.serial < 0n || c.serial >= 1n << 64n) {
        throw invalid('DSN serial must be a 64-bit bigint');
      }
      return;
    case 'vendor':
      checkUint(c.vsecId, 16, 'vsecId');
      if (c.vsecRev !== undefined) checkUint(c.vsecRev, 4, 'vsecRev');
      if (!(c.data instanceof Uint8Array)) throw invalid('vendor extended capability data must be a Uint8Array');
      if (8 + c.data.length > 0xfff) throw invalid('vendor extended capability is longer than 4095 bytes');
      if (c.writable instanceof Uint8Array && c.writable.length !== c.data.length) {
        throw invalid('vendor extended capability writable mask must have the length of data');
      }
      return;
    default:
      throw invalid(`unknown extended capability type ${String((c as { type: unknown }).type)}`);
  }
}
