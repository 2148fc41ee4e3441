import { IrqInfoFlags, RegionInfoFlags } from '../protocol/constants.js';

const REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'CONFIG', 'VGA'];

/** BAR0..BAR5, ROM, CONFIG, VGA, or REGION<n> for device-specific regions. */
export function regionName(index: number): string {
  return REGION_NAMES[index] ?? `REGION${index}`;
}

/** Region info flags as names (READ, WRITE, MMAP, CAPS). */
export function describeRegionFlags(flags: number): string[] {
  const out: string[] = [];
  if (flags & RegionInfoFlags.READ) out.push('READ');
  if (flags & RegionInfoFlags.WRITE) out.push('WRITE');
  if (flags & RegionInfoFlags.MMAP) out.push('MMAP');
  if (flags & RegionInfoFlags.CAPS) out.push('CAPS');
  return out;
}

/** IRQ info flags as names (EVENTFD, MASKABLE, AUTOMASKED, NORESIZE). */
export function describeIrqFlags(flags: number): string[] {
  const out: string[] = [];
  if (flags & IrqInfoFlags.EVENTFD) out.push('EVENTFD');
  if (flags & IrqInfoFlags.MASKABLE) out.push('MASKABLE');
  if (flags & IrqInfoFlags.AUTOMASKED) out.push('AUTOMASKED');
  if (flags & IrqInfoFlags.NORESIZE) out.push('NORESIZE');
  return out;
}
