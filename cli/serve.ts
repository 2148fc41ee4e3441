// Shared plumbing of the serving subcommands (server, gpio, nvme): listen,
// stop cleanly on SIGINT/SIGTERM (closing the client gracefully and removing
// the socket file), optionally after the first client leaves.
import type { DeviceContext } from '../src/server/context.js';

/** The flag every serving command takes for the dedicated-thread mode. */
export const DEDICATED_THREAD_FLAG = '--dedicated-thread';

/** Usage line of that flag, shared by the serving commands' help. */
export const DEDICATED_THREAD_USAGE =
  '  --dedicated-thread  serve from this thread blocking in recvmsg (2 syscalls per request, like libvfio-user\'s vfu_run_ctx)';

/** Removes --dedicated-thread from `args`; says whether it was there. */
export function takeDedicatedThread(args: string[]): { args: string[]; dedicatedThread: boolean } {
  const rest = args.filter((a) => a !== DEDICATED_THREAD_FLAG);
  return { args: rest, dedicatedThread: rest.length !== args.length };
}

export interface ServeOptions {
  /** Serve in the dedicated-thread mode (ServerOptions.dedicatedThread). */
  dedicatedThread?: boolean;
  /** Stop when the first client disconnects (libvfio-user's sample server does). */
  exitOnDisconnect: boolean;
  /** Exit code when stopping, computed at that time. */
  exitCode?: () => number;
}

export async function serveUntilDone(ctx: DeviceContext, path: string, opts: ServeOptions): Promise<number> {
  await ctx.listen(path, opts.dedicatedThread ? { dedicatedThread: true } : {});
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (code: number): void => {
      if (stopping) return;
      stopping = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      void ctx.close().then(() => resolve(opts.exitCode ? Math.max(code, opts.exitCode()) : code));
    };
    const onSignal = (): void => stop(0);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (opts.exitOnDisconnect) ctx.on('disconnect', () => stop(0));
  });
}
