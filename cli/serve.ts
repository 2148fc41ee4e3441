// Shared plumbing of the serving subcommands (server, gpio, nvme): listen,
// stop cleanly on SIGINT/SIGTERM (closing the client gracefully and removing
// the socket file), optionally after the first client leaves.
import type { DeviceContext } from '../src/server/context.js';
import { applySocketOwner, type SocketOwner } from './socket-options.js';
import type { CliOptions } from './types.js';

/** The option every serving command takes for the dedicated-thread mode. */
export const DEDICATED_THREAD_OPTION = {
  'dedicated-thread': { type: 'boolean' },
} as const satisfies CliOptions;

/** Usage line of that option, shared by the serving commands' help. */
export const DEDICATED_THREAD_USAGE =
  '  --dedicated-thread         serve from this thread blocking in recvmsg (2 syscalls per request, like libvfio-user\'s vfu_run_ctx)';

export interface ServeOptions {
  /** Serve in the dedicated-thread mode (ServerOptions.dedicatedThread). */
  dedicatedThread?: boolean;
  /** Stop when the first client disconnects (libvfio-user's sample server does). */
  exitOnDisconnect: boolean;
  /** Exit code when stopping, computed at that time. */
  exitCode?: () => number;
  /** Who the socket file is handed to once it exists (--socket-owner). */
  owner?: SocketOwner | undefined;
  /** Where a failure to close is reported (stderr by default). */
  err?: (text: string) => void;
}

export async function serveUntilDone(ctx: DeviceContext, path: string, opts: ServeOptions): Promise<number> {
  // The signal handlers go in before the socket file appears: whoever waits
  // for that file may signal us at once, and an unhandled SIGTERM would kill
  // the process without closing the client or removing the file.
  let stopping = false;
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  // The handlers stay until the close is over: a SIGTERM that arrives while
  // the server is already stopping (the client left, and whoever started us
  // signals at the same moment) must not kill the process before it has
  // removed the socket file. A second signal still ends the process at once:
  // by the time a handler runs, close() has removed the file (synchronously,
  // in the turn that called stop()).
  const unhook = (): void => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    // A close that fails still ends serving, with a failure code and the reason on stderr.
    ctx.close().then(
      () => {
        unhook();
        resolveDone(opts.exitCode ? Math.max(code, opts.exitCode()) : code);
      },
      (e: unknown) => {
        unhook();
        const err = opts.err ?? ((t: string) => void process.stderr.write(t));
        err(`vfio-user: closing ${path} failed: ${e instanceof Error ? e.message : String(e)}\n`);
        resolveDone(Math.max(code, 1));
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!stopping) return stop(0);
    unhook();
    process.kill(process.pid, signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await ctx.listen(path, opts.dedicatedThread ? { dedicatedThread: true } : {});
    applySocketOwner(path, opts.owner);
  } catch (e) {
    unhook();
    await ctx.close();
    throw e;
  }
  if (opts.exitOnDisconnect) ctx.on('disconnect', () => stop(0));
  return done;
}
