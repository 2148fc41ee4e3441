import { MigrationFlags } from '../protocol/constants.js';
import { VfioUserClient } from './client.js';
import type { ClientOptions } from './types.js';

/** Device states (VFIO_DEVICE_STATE_*). */
const STOP = 1;
const RUNNING = 2;
const STOP_COPY = 3;
const RESUMING = 4;
const PRE_COPY = 6;

/** Where migrate() is: connecting, pre-copy passes, stop-and-copy, restoring the destination, re-establishing memory and interrupts, done. */
export type MigrationPhase = 'connect' | 'pre-copy' | 'stop-copy' | 'restore' | 'resume' | 'done';

/** What migrate() reports to `onProgress`. */
export interface MigrationProgress {
  /** Where the migration is. */
  phase: MigrationPhase;
  /** Device-state bytes moved so far (both phases). */
  bytes: number;
  /** Pre-copy iteration (1-based) while phase is 'pre-copy'. */
  iteration?: number;
  /** Dirty guest pages the device reported in this pre-copy iteration. */
  dirtyPages?: number;
}

/** Options of migrate(). */
export interface MigrateOptions {
  /** Options for connecting to the destination (when given a path). */
  client?: ClientOptions;
  /** Bytes per MIG_DATA_READ. Default: the smaller of both sides' transfer sizes. */
  chunkSize?: number;
  /** MIG_DATA_READs kept in flight (and as many writes). Default 4. */
  window?: number;
  /** At most this many pre-copy passes (each reads until the device has nothing more for now). Default 3. */
  maxPreCopyIterations?: number;
  /**
   * Called between pre-copy passes while the source still runs (a test
   * keeps the guest busy here). Return false to stop iterating early.
   */
  betweenIterations?: (iteration: number) => Promise<boolean | void> | boolean | void;
  /** Track dirty guest pages during pre-copy (DMA logging on the source). Default true when the source has fd-backed guest memory. */
  dirtyLogging?: boolean;
  /** Called at every phase change and after every pre-copy pass. */
  onProgress?: (p: MigrationProgress) => void;
}

/** What migrate() returns. */
export interface MigrationResult {
  /** The client of the destination, with guest memory and interrupts re-established. */
  destination: VfioUserClient;
  /** Device-state bytes moved while the source still ran. */
  preCopyBytes: number;
  /** Device-state bytes moved after the source stopped. */
  stopCopyBytes: number;
  /** Pre-copy passes made (0 without PRE_COPY). */
  preCopyIterations: number;
  /** From the source stopping (STOP_COPY) to the destination RUNNING. */
  downtimeMs: number;
  /** From the call to the destination ready, connection included. */
  totalMs: number;
}

/**
 * Moves device state from `source` to `dest` until the source has nothing
 * more for now (a short read, as the spec says), keeping up to `window`
 * MIG_DATA_READs and MIG_DATA_WRITEs in flight so the two servers and the
 * sockets work in parallel. The server handles commands in order, so the
 * data arrives in order; reads issued past the end return 0 bytes.
 * Returns the bytes moved.
 */
export async function forwardState(source: VfioUserClient, dest: VfioUserClient, chunk: number, window = 4): Promise<number> {
  const reads: Promise<{ data: Uint8Array; size: number }>[] = [];
  const writes: Promise<void>[] = [];
  let moved = 0;
  let ended = false;
  for (let i = 0; i < Math.max(1, window); i++) reads.push(source.migDataRead(chunk));
  try {
    while (reads.length > 0) {
      const { data, size } = await reads.shift()!;
      if (size > 0 && !ended) {
        writes.push(dest.migDataWrite(data));
        moved += size;
        if (writes.length >= window) await writes.shift();
      }
      if (size < chunk) ended = true;
      else if (!ended) reads.push(source.migDataRead(chunk));
    }
    await Promise.all(writes);
  } catch (e) {
    // Settle what is still in flight before reporting the first failure.
    await Promise.allSettled([...reads, ...writes]);
    throw e;
  }
  return moved;
}

/**
 * Live-migrates the device behind `source` to the server at `destination`
 * (a socket path or a connected client): RESUMING on the destination,
 * pre-copy passes while the source runs (when the device supports
 * PRE_COPY), stop-and-copy, STOP then RUNNING on the destination, and then
 * the source's guest memory (same memfds, same IOVAs) and interrupt vectors
 * (new eventfds) are mapped on the destination, as the spec requires after
 * RUNNING. The source is left in STOP; closing it is the caller's call.
 */
export async function migrate(source: VfioUserClient, destination: string | VfioUserClient, opts: MigrateOptions = {}): Promise<MigrationResult> {
  const t0 = Date.now();
  const progress = (p: MigrationProgress): void => opts.onProgress?.(p);
  let bytes = 0;
  progress({ phase: 'connect', bytes });
  const dest = typeof destination === 'string' ? await VfioUserClient.connect(destination, opts.client) : destination;
  try {
    const flags = await source.getMigrationFlags();
    const preCopy = (flags & MigrationFlags.PRE_COPY) !== 0n;
    const chunk = opts.chunkSize ?? Math.min(source.xferChunk, dest.xferChunk);
    const forward = (): Promise<number> => forwardState(source, dest, chunk, opts.window ?? 4);
    await dest.setDeviceState(RESUMING);

    const memories = source.guestMemories().filter((m) => m.mapped && m.useFd);
    const logging = (opts.dirtyLogging ?? memories.length > 0) && memories.length > 0;
    let preCopyBytes = 0;
    let iterations = 0;
    if (preCopy) {
      if (logging) await source.startDirtyLogging(4096);
      await source.setDeviceState(PRE_COPY);
      const max = opts.maxPreCopyIterations ?? 3;
      for (let i = 1; i <= max; i++) {
        iterations = i;
        const n = await forward();
        preCopyBytes += n;
        bytes += n;
        let dirtyPages: number | undefined;
        if (logging) {
          dirtyPages = 0;
          for (const m of memories) {
            const r = await source.dirtyReport(m.iova, m.size, 4096);
            for (const b of r.bitmap) for (let x = b; x; x &= x - 1) dirtyPages++;
          }
        }
        progress({ phase: 'pre-copy', bytes, iteration: i, ...(dirtyPages !== undefined ? { dirtyPages } : {}) });
        if (i === max) break;
        const more = await opts.betweenIterations?.(i);
        if (more === false || (n === 0 && i > 1)) break;
      }
    }
    const stopped = Date.now();
    await source.setDeviceState(STOP_COPY);
    const stopCopyBytes = await forward();
    bytes += stopCopyBytes;
    progress({ phase: 'stop-copy', bytes });
    await source.setDeviceState(STOP);
    if (logging) await source.stopDirtyLogging();

    progress({ phase: 'restore', bytes });
    await dest.setDeviceState(STOP); // the destination validates what it received
    await dest.setDeviceState(RUNNING);
    const downtimeMs = Date.now() - stopped;

    progress({ phase: 'resume', bytes });
    for (const m of source.guestMemories().filter((g) => g.mapped)) {
      await dest.adoptGuestMemory(m);
    }
    const vectors = new Map<number, number[]>();
    for (const [index, vector] of source.irqVectors()) vectors.set(index, [...(vectors.get(index) ?? []), vector]);
    for (const [index, list] of vectors) {
      for (const v of list.sort((a, b) => a - b)) await dest.enableIrqEventfds(index, v, 1);
    }
    progress({ phase: 'done', bytes });
    return { destination: dest, preCopyBytes, stopCopyBytes, preCopyIterations: iterations, downtimeMs, totalMs: Date.now() - t0 };
  } catch (e) {
    if (typeof destination === 'string') await dest.close().catch(() => {});
    throw e;
  }
}
