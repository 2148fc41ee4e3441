// Runs the conformance cases against one server: a fresh connection per
// case, the fd count of the server process around each case (--pid), a
// liveness probe after each case, and a restart through the shell for
// servers that exit after a client (--restart).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, unlinkSync } from 'node:fs';
import { isNativeError } from '../../src/native/binding.js';
import { CheckWaitError, RawClient } from './raw-client.js';
import { discover, type DeviceProfile } from './profile.js';
import { CaseFailure, type CaseContext, type CaseResult, type CheckCase, type GroupName } from './types.js';

/** Options of a run (the CLI's flags). */
export interface CheckOptions {
  socket: string;
  /** Server process to watch for fd leaks. */
  pid?: number;
  /** Shell command that starts the server; `{sock}` becomes the socket path. */
  restart?: string;
  /** Only these groups. */
  only?: GroupName[];
  /** Reply timeout in ms (default 2000). */
  timeoutMs?: number;
  /** Called with each result as it is known. */
  onResult?: (r: CaseResult) => void;
  /** Diagnostics (restarts). */
  onNote?: (text: string) => void;
}

/** Totals of a run. */
export interface CheckSummary {
  passed: number;
  failed: number;
  skipped: number;
  results: CaseResult[];
  /** Set when the suite could not start (no server, discovery failed). */
  fatal?: string;
}

/** Counts the entries of /proc/PID/fd; null when the process is gone. */
export function countFds(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Owns the server's lifecycle as far as the suite needs it. */
class ServerHandle {
  child: ChildProcess | null = null;
  restarts = 0;
  constructor(
    private readonly o: CheckOptions,
    private readonly timeoutMs: number,
  ) {}

  /** A connection was made to the current server process (it may be on its way out). */
  private used = false;

  /**
   * A connection (negotiated unless `raw`). With --restart, a server that is
   * gone, or that closes the connection before negotiating (it was exiting
   * after its last client), is started again once.
   */
  async connect(raw: boolean): Promise<RawClient> {
    if (this.o.restart && this.used) await this.waitExit(500);
    for (let attempt = 0; ; attempt++) {
      let c: RawClient | null = null;
      try {
        c = await this.connectOnce();
        this.used = true;
        if (!raw) await c.negotiate();
        return c;
      } catch (e) {
        c?.abort();
        if (!this.o.restart || attempt > 0 || !restartable(e)) throw e;
        await this.restart();
      }
    }
  }

  /** Waits up to `ms` for the server we started to exit. */
  private async waitExit(ms: number): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const onExit = (): void => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        child.off('exit', onExit);
        resolve();
      }, ms);
      child.once('exit', onExit);
    });
  }

  private async connectOnce(): Promise<RawClient> {
    return RawClient.connect(this.o.socket, { timeoutMs: this.timeoutMs });
  }

  async restart(): Promise<void> {
    const cmd = this.o.restart!;
    // Still running (it may be busy closing the last client): give it a moment.
    await this.waitExit(2000);
    this.used = false;
    // A socket file nobody listens on would make the new server's bind fail.
    try {
      if (lstatSync(this.o.socket).isSocket()) unlinkSync(this.o.socket);
    } catch {
      // no stale file
    }
    const line = cmd.split('{sock}').join(shellQuote(this.o.socket));
    this.restarts++;
    this.o.onNote?.(`starting the server: ${line}`);
    this.child = spawn('sh', ['-c', line], { stdio: ['ignore', 'ignore', 'inherit'], detached: false });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      // Not probed with a connection: a server that serves one client would
      // take the probe as its client and exit.
      if (existsSync(this.o.socket)) {
        await sleep(50);
        return;
      }
      if (this.child.exitCode !== null) throw new Error(`the restart command exited with status ${this.child.exitCode}`);
      await sleep(20);
    }
    throw new Error(`the server started by --restart did not listen on ${this.o.socket} within 20 s`);
  }

  stop(): void {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}

/** Errors that mean "nobody is serving right now". */
function restartable(e: unknown): boolean {
  if (isNativeError(e, 'ENOENT') || isNativeError(e, 'ECONNREFUSED') || isNativeError(e, 'ECONNRESET') || isNativeError(e, 'EPIPE')) return true;
  return e instanceof CheckWaitError && e.code === 'ERR_CHECK_CLOSED';
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Runs `cases` (already filtered) against the server. */
export async function runCheck(cases: readonly CheckCase[], o: CheckOptions): Promise<CheckSummary> {
  const timeoutMs = o.timeoutMs ?? 2000;
  const server = new ServerHandle(o, timeoutMs);
  const summary: CheckSummary = { passed: 0, failed: 0, skipped: 0, results: [] };
  let profile: DeviceProfile;
  try {
    const c = await server.connect(false);
    try {
      profile = await discover(c);
    } finally {
      await c.close();
    }
  } catch (e) {
    server.stop();
    summary.fatal = `cannot discover the device at ${o.socket}: ${(e as Error).message}`;
    return summary;
  }
  const open = new Set<RawClient>();
  /** The case running, and the last one the server negotiated with (for "stopped after ..."). */
  let current = 'discovery';
  let lastServed = 'discovery';
  const pidNow = (): number | undefined => o.pid;
  const ctx: CaseContext = {
    profile,
    timeoutMs,
    async connect(raw = false) {
      const c = await server.connect(raw);
      open.add(c);
      if (!raw) lastServed = current;
      return c;
    },
    serverFdCount: () => {
      const pid = pidNow();
      return pid === undefined ? null : countFds(pid);
    },
    async serverAlive() {
      for (let i = 0; i < 3; i++) {
        try {
          const c = await server.connect(false);
          await c.close();
          return true;
        } catch {
          await sleep(100);
        }
      }
      return false;
    },
  };
  const settleFds = async (baseline: number | null): Promise<number | null> => {
    if (baseline === null) return null;
    // The server drops a client's fds after it noticed the disconnect; on a
    // loaded machine that can take a while (up to 3 s is waited for).
    let n = ctx.serverFdCount();
    for (let i = 0; i < 150 && n !== null && n > baseline; i++) {
      await sleep(20);
      n = ctx.serverFdCount();
    }
    return n;
  };
  // Without --restart, a server that stopped accepting clients fails every
  // later case for the same reason: say so once per case, naming when.
  let gone: string | null = null;
  for (const k of cases) {
    const started = Date.now();
    current = k.id;
    const before = gone ? null : ctx.serverFdCount();
    let outcome;
    if (gone) {
      outcome = { status: 'fail' as const, detail: `not run: ${gone}` };
    } else {
      try {
        outcome = await k.run(ctx);
      } catch (e) {
        if (!o.restart && (isNativeError(e, 'ENOENT') || isNativeError(e, 'ECONNREFUSED'))) {
          gone = `the server stopped accepting clients after ${lastServed} (${(e as Error).message})`;
          outcome = { status: 'fail' as const, detail: gone };
        } else {
          outcome = { status: 'fail' as const, detail: e instanceof CaseFailure ? e.message : `${(e as Error).message ?? String(e)}` };
        }
      }
    }
    for (const c of open) await c.close().catch(() => undefined);
    open.clear();
    if (before !== null && outcome.status !== 'skip' && !o.restart) {
      const after = await settleFds(before);
      if (after !== null && after > before) {
        outcome = { status: 'fail' as const, detail: `${outcome.detail ? `${outcome.detail}; ` : ''}the server holds ${after - before} more fd(s) after the client left (${before} -> ${after})` };
      }
    }
    const r: CaseResult = { id: k.id, group: k.group, spec: k.spec, title: k.title, status: outcome.status, ms: Date.now() - started };
    if (outcome.detail) r.detail = outcome.detail;
    summary.results.push(r);
    if (r.status === 'pass') summary.passed++;
    else if (r.status === 'fail') summary.failed++;
    else summary.skipped++;
    o.onResult?.(r);
  }
  server.stop();
  return summary;
}
