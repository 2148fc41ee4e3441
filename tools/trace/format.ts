// One line per traced message: text for people, JSON for programs.
import type { TraceEvent, TraceValue } from './decode.js';

function value(v: TraceValue): string {
  if (Array.isArray(v)) return `[${v.map(value).join(' ')}]`;
  if (typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${k}=${value(x)}`).join(' ')}}`;
  return String(v);
}

/**
 * `  0.012345 #1 c>s   258 REGION_READ        size=32 region=7 offset=0x0 count=4`
 * Replies add `reply`, `ERROR ENAME` and `in 0.081 ms`; twin-socket messages
 * are marked `twin`.
 */
export function formatEvent(e: TraceEvent): string {
  const parts = [
    e.t.toFixed(6).padStart(11),
    `#${e.session}${e.socket === 'twin' ? ' twin' : ''}`,
    e.dir,
    String(e.id).padStart(5),
    `${e.name}${e.kind === 'reply' ? ' reply' : ''}`.padEnd(26),
    `size=${e.size}`,
  ];
  if (e.noReply) parts.push('NO_REPLY');
  if (e.error) parts.push(`ERROR ${e.error}`);
  if (e.fds) parts.push(`fds=${e.fds}`);
  for (const [k, v] of Object.entries(e.payload)) parts.push(k === 'json' ? String(v) : `${k}=${value(v)}`);
  if (e.latencyMs !== undefined) parts.push(`in ${e.latencyMs.toFixed(3)} ms`);
  return parts.join(' ');
}

/** The event as one JSON line. */
export function formatEventJson(e: TraceEvent): string {
  return JSON.stringify(e);
}
