// A byte-level test client: an Endpoint over a real socket or an in-memory
// pair, speaking to a DeviceContext. Tests build messages with the protocol
// codecs and assert on exact replies.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { DeviceContext } from '../../src/server/context.js';
import type { DeviceDescription } from '../../src/server/device.js';
import type { ServerOptions } from '../../src/server/options.js';
import { Endpoint } from '../../src/transport/endpoint.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import type { Message, Transport } from '../../src/transport/types.js';
import { encodeVersionWithCapabilities, type CapabilitiesInput } from '../../src/protocol/version.js';
import { Command } from '../../src/protocol/commands.js';

/** 'dedicated': a socket to a server in dedicated-thread mode (blocking receive), in this same thread. */
export type TransportKind = 'socket' | 'memory' | 'dedicated';
export const TRANSPORTS: TransportKind[] = ['socket', 'memory', 'dedicated'];

export interface Rig {
  ctx: DeviceContext;
  ep: Endpoint;
  /** Sends a command and returns the reply (rejects with RemoteError on error replies). */
  call(command: number, payload?: Uint8Array, fds?: number[]): Promise<Message>;
  /** errno of an error reply, or fails the test if the command succeeded. */
  errno(command: number, payload?: Uint8Array, fds?: number[]): Promise<number>;
  /** Connects another client (after the first has gone). */
  reconnect(caps?: CapabilitiesInput): Promise<Endpoint>;
  close(): Promise<void>;
  path: string | null;
}

export async function negotiate(ep: Endpoint, caps: CapabilitiesInput = { maxMsgFds: 16, maxDataXferSize: 1048576 }): Promise<Message> {
  return ep.request(Command.VERSION, encodeVersionWithCapabilities(0, 2, caps));
}

function connectTransport(kind: TransportKind, ctx: DeviceContext, path: string | null): Transport {
  if (kind !== 'memory') return new SocketTransport(native.connect(path!));
  const limits = { maxMessageSize: ctx.options.maxMessageSize, maxFdsPerMessage: ctx.options.maxMsgFds };
  const [a, b] = createMemoryPair({ dupFd: (fd) => native.dup(fd), closeFd: (fd) => native.close(fd), limits });
  ctx.attach(b);
  return a;
}

export async function startRig(
  kind: TransportKind,
  desc: DeviceDescription,
  opts: ServerOptions = {},
  caps?: CapabilitiesInput,
  negotiateFirst = true,
): Promise<Rig> {
  const ctx = new DeviceContext(desc, kind === 'dedicated' ? { ...opts, dedicatedThread: true } : opts);
  let dir: string | null = null;
  let path: string | null = null;
  if (kind !== 'memory') {
    dir = mkdtempSync(join(tmpdir(), 'vfu-test-'));
    path = join(dir, 'dev.sock');
    await ctx.listen(path);
  }
  let ep = new Endpoint(connectTransport(kind, ctx, path));
  if (negotiateFirst) await negotiate(ep, caps);
  const rig: Rig = {
    ctx,
    path,
    get ep() {
      return ep;
    },
    call: (command, payload, fds) => ep.request(command, payload, fds ? { fds } : {}),
    async errno(command, payload, fds) {
      try {
        await ep.request(command, payload, fds ? { fds } : {});
      } catch (e) {
        const n = (e as { errno?: number }).errno;
        if (typeof n === 'number') return n;
        throw e;
      }
      throw new Error(`command ${command} unexpectedly succeeded`);
    },
    async reconnect(c) {
      await ctx.waitForDisconnect();
      ep = new Endpoint(connectTransport(kind, ctx, path));
      await negotiate(ep, c);
      return ep;
    },
    async close() {
      await ep.close();
      await ctx.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return rig;
}

/** Resolves after pending I/O callbacks had a chance to run. */
export const settle = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));
