// Per-worker counters in a SharedArrayBuffer: each worker writes its own
// row, the controller's thread reads them all whenever asked (no messages).

/** The counters of one I/O worker. */
export interface IoWorkerStats {
  ioCommands: number;
  errors: number;
  /** Interrupts raised (CQs that got entries, interrupt-enabled). */
  interrupts: number;
  /** Of those, written to the client's eventfd by the worker itself. */
  interruptsDirect: number;
  /** Of those, sent to the controller's thread (masked, gated, or no fd yet). */
  interruptsForwarded: number;
  readCommands: number;
  writeCommands: number;
  blocksRead: number;
  blocksWritten: number;
  /** Times the worker was woken by a doorbell. */
  wakeups: number;
  /** DMA regions over 4 GiB (mapped in 1 GiB windows) this worker maps. */
  windowedRegions: number;
  /** Guest memory accesses through such a region. */
  windowedAccesses: number;
  /** Highest guest address accessed through such a region (-1: none). */
  highestWindowedIova: number;
  /** Views still held when their region was unmapped (revoked). */
  revokedViews: number;
}

export const STAT_FIELDS = [
  'ioCommands',
  'errors',
  'interrupts',
  'interruptsDirect',
  'interruptsForwarded',
  'readCommands',
  'writeCommands',
  'blocksRead',
  'blocksWritten',
  'wakeups',
  'windowedRegions',
  'windowedAccesses',
  'highestWindowedIova',
  'revokedViews',
] as const satisfies readonly (keyof IoWorkerStats)[];

/** Shared rows for `workers` workers. */
export function createStatsBuffer(workers: number): SharedArrayBuffer {
  return new SharedArrayBuffer(workers * STAT_FIELDS.length * 8);
}

/** Writes worker `w`'s row (Float64 stores: each value is read whole). */
export function writeStats(buf: SharedArrayBuffer, w: number, s: IoWorkerStats): void {
  const row = new Float64Array(buf, w * STAT_FIELDS.length * 8, STAT_FIELDS.length);
  for (let i = 0; i < STAT_FIELDS.length; i++) row[i] = s[STAT_FIELDS[i]!];
}

/** Reads worker `w`'s row. */
export function readStats(buf: SharedArrayBuffer, w: number): IoWorkerStats {
  const row = new Float64Array(buf, w * STAT_FIELDS.length * 8, STAT_FIELDS.length);
  const out = {} as IoWorkerStats;
  STAT_FIELDS.forEach((k, i) => (out[k] = row[i]!));
  return out;
}
