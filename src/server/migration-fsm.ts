import { DeviceState } from '../protocol/constants.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';

/** VFIO device states (values on the wire, VFIO_DEVICE_STATE_*). */
export const MigState = DeviceState;
export type MigStateValue = (typeof MigState)[keyof typeof MigState];

/** The name of a migration state number (`RUNNING`, `STOP_COPY`, ...). */
export const migStateName = (s: number): string =>
  (Object.entries(MigState).find(([, v]) => v === s)?.[0] ?? `STATE_${s}`);

/**
 * The direct arcs vfio-user devices support (VFIO's v2 state machine without
 * the P2P states). STOP_COPY -> PRE_COPY is deliberately absent: the spec
 * forbids it.
 */
const DIRECT_ARCS: ReadonlyArray<readonly [number, number]> = [
  [MigState.RUNNING, MigState.STOP],
  [MigState.STOP_COPY, MigState.STOP],
  [MigState.RESUMING, MigState.STOP],
  [MigState.PRE_COPY, MigState.RUNNING],
  [MigState.STOP, MigState.RUNNING],
  [MigState.RUNNING, MigState.PRE_COPY],
  [MigState.STOP, MigState.STOP_COPY],
  [MigState.PRE_COPY, MigState.STOP_COPY],
  [MigState.STOP, MigState.RESUMING],
];

/** States that may appear only at the ends of a composite transition. */
const SAVING = new Set<number>([MigState.PRE_COPY, MigState.STOP_COPY]);
const USABLE = [MigState.STOP, MigState.RUNNING, MigState.STOP_COPY, MigState.RESUMING, MigState.PRE_COPY];

/**
 * Shortest path of direct arcs from `from` to `to` whose interior states are
 * not saving states, or null. Computed once into PATHS below by BFS, so the
 * rules live in the arc list rather than in branches.
 */
function bfs(from: number, to: number, arcs: ReadonlyArray<readonly [number, number]>): number[] | null {
  const prev = new Map<number, number>([[from, -1]]);
  const queue = [from];
  while (queue.length > 0) {
    const s = queue.shift()!;
    if (s === to) break;
    if (s !== from && SAVING.has(s)) continue; // may not pass through
    for (const [a, b] of arcs) {
      if (a === s && !prev.has(b)) {
        prev.set(b, s);
        queue.push(b);
      }
    }
  }
  if (!prev.has(to)) return null;
  const path: number[] = [];
  for (let s = to; s !== from; s = prev.get(s)!) path.unshift(s);
  return path;
}

/**
 * Requests refused even though a path exists: leaving STOP_COPY for PRE_COPY
 * would restart a save session whose final data was already (partly) read.
 */
const FORBIDDEN = new Set<string>([`${MigState.STOP_COPY}>${MigState.PRE_COPY}`]);

function buildPaths(arcs: ReadonlyArray<readonly [number, number]>): Map<string, number[] | null> {
  const m = new Map<string, number[] | null>();
  for (const a of USABLE) {
    for (const b of USABLE) {
      const key = `${a}>${b}`;
      m.set(key, a === b ? [] : FORBIDDEN.has(key) ? null : bfs(a, b, arcs));
    }
  }
  return m;
}

const PATHS_WITH_PRECOPY = buildPaths(DIRECT_ARCS);
const PATHS_NO_PRECOPY = buildPaths(DIRECT_ARCS.filter(([a, b]) => a !== MigState.PRE_COPY && b !== MigState.PRE_COPY));

/**
 * The hops (excluding `from`, including `to`) for a requested transition.
 * Throws ProtocolError(EINVAL) for forbidden or unknown states.
 */
export function transitionPath(from: number, to: number, preCopy: boolean): number[] {
  const paths = preCopy ? PATHS_WITH_PRECOPY : PATHS_NO_PRECOPY;
  const p = paths.get(`${from}>${to}`);
  if (p === undefined || p === null) {
    throw new ProtocolError(Errno.EINVAL, `migration transition ${migStateName(from)} -> ${migStateName(to)} not allowed`);
  }
  return p;
}

/** The table, for documentation and tests: next hop per (from, to), or null. */
export function nextHopTable(preCopy = true): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const a of USABLE) {
    for (const b of USABLE) {
      if (a === b) continue;
      const p = (preCopy ? PATHS_WITH_PRECOPY : PATHS_NO_PRECOPY).get(`${a}>${b}`);
      out[`${migStateName(a)}>${migStateName(b)}`] = p ? p.map(migStateName).join('>') : null;
    }
  }
  return out;
}
