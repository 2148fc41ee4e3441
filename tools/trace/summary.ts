// Per-command totals of a traced session: how many commands, posted
// commands, error replies and bytes, and the latency percentiles from
// command to reply.
import type { TraceEvent } from './decode.js';

/** Totals of one command name. */
export interface CommandStats {
  name: string;
  commands: number;
  /** Commands sent with NO_REPLY. */
  posted: number;
  errors: number;
  bytes: number;
  /** Latency percentiles in ms (absent without replies). */
  p50?: number;
  p90?: number;
  p99?: number;
  max?: number;
}

/** The summary printed at exit. */
export interface TraceSummary {
  sessions: number;
  messages: number;
  bytes: number;
  fds: number;
  commands: CommandStats[];
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Accumulates events into a TraceSummary. */
export class SummaryBuilder {
  private readonly by = new Map<string, { s: CommandStats; lat: number[] }>();
  private messages = 0;
  private bytes = 0;
  private fds = 0;
  sessions = 0;

  add(e: TraceEvent): void {
    this.messages++;
    this.bytes += e.size;
    this.fds += e.fds;
    let x = this.by.get(e.name);
    if (!x) {
      x = { s: { name: e.name, commands: 0, posted: 0, errors: 0, bytes: 0 }, lat: [] };
      this.by.set(e.name, x);
    }
    x.s.bytes += e.size;
    if (e.kind === 'command') {
      x.s.commands++;
      if (e.noReply) x.s.posted++;
    } else {
      if (e.error) x.s.errors++;
      if (e.latencyMs !== undefined) x.lat.push(e.latencyMs);
    }
  }

  build(): TraceSummary {
    const commands = [...this.by.values()]
      .map(({ s, lat }) => {
        const out = { ...s };
        if (lat.length) {
          const sorted = [...lat].sort((a, b) => a - b);
          out.p50 = percentile(sorted, 50);
          out.p90 = percentile(sorted, 90);
          out.p99 = percentile(sorted, 99);
          out.max = sorted.at(-1)!;
        }
        return out;
      })
      .sort((a, b) => b.commands - a.commands || a.name.localeCompare(b.name));
    return { sessions: this.sessions, messages: this.messages, bytes: this.bytes, fds: this.fds, commands };
  }
}

const ms = (v: number | undefined): string => (v === undefined ? '-' : v < 10 ? v.toFixed(3) : v.toFixed(1));

/** The summary as a text table. */
export function formatSummary(s: TraceSummary): string {
  const rows = s.commands.map((c) => [c.name, String(c.commands), String(c.posted), String(c.errors), String(c.bytes), ms(c.p50), ms(c.p90), ms(c.p99), ms(c.max)]);
  const head = ['command', 'count', 'posted', 'errors', 'bytes', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((v, i) => (i === 0 ? v.padEnd(w[i]!) : v.padStart(w[i]!))).join('  ');
  return [`summary: ${s.sessions} session(s), ${s.messages} messages, ${s.bytes} bytes, ${s.fds} fds`, line(head), ...rows.map(line), ''].join('\n');
}
