// Shared plumbing of the serving subcommands (server, gpio, nvme): listen,
// stop cleanly on SIGINT/SIGTERM (closing the client gracefully and removing
// the socket file), optionally after the first client leaves.
import type { DeviceContext } from '../src/server/context.js';

export interface ServeOptions {
  /** Stop when the first client disconnects (libvfio-user's sample server does). */
  exitOnDisconnect: boolean;
  /** Exit code when stopping, computed at that time. */
  exitCode?: () => number;
}

export async function serveUntilDone(ctx: DeviceContext, path: string, opts: ServeOptions): Promise<number> {
  await ctx.listen(path);
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
