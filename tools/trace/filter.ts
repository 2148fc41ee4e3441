// --filter: which commands are printed (every message is still forwarded
// and counted in the summary).
import { Command } from '../../src/protocol/commands.js';
import { CMD_X_VM_INTERRUPT } from '../../src/protocol/extensions.js';

/** Error of a bad --filter value (names the offending entry). */
export class TraceFilterError extends Error {
  readonly code = 'ERR_TRACE_FILTER';
}

/**
 * "REGION_READ,dma_map,8" -> command numbers. Names are case-insensitive,
 * with or without the VFIO_USER_ prefix; numbers are taken as they are.
 */
export function parseFilter(spec: string): Set<number> {
  const out = new Set<number>();
  for (const raw of spec.split(',')) {
    const s = raw.trim();
    if (s === '') continue;
    if (/^(0x[0-9a-f]+|\d+)$/i.test(s)) {
      out.add(Number(s));
      continue;
    }
    const name = s.toUpperCase().replace(/^VFIO_USER_/, '');
    if (name === 'X_VM_INTERRUPT') {
      out.add(CMD_X_VM_INTERRUPT);
      continue;
    }
    const n = (Command as Record<string, number>)[name];
    if (n === undefined) throw new TraceFilterError(`unknown command '${s}' in --filter`);
    out.add(n);
  }
  return out;
}
