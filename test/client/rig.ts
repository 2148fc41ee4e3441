// Shared setup for the client tests: a DeviceContext served over a real UNIX
// socket or an in-memory transport pair, and a VfioUserClient attached to it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/binding.js';
import { DeviceContext } from '../../src/server/context.js';
import type { DeviceDescription } from '../../src/server/device.js';
import type { ServerOptions } from '../../src/server/options.js';
import { createMemoryPair } from '../../src/transport/memory-transport.js';
import { VfioUserClient, type ClientOptions } from '../../src/client/index.js';

/** 'dedicated': a socket to a server in dedicated-thread mode (blocking receive), in this same thread. */
export type TransportKind = 'socket' | 'memory' | 'dedicated';
export const TRANSPORTS: TransportKind[] = ['socket', 'memory', 'dedicated'];

export interface Rig {
  ctx: DeviceContext;
  client: VfioUserClient;
  path: string | null;
  /** Closes the client, waits for the server to drop it, closes the server. */
  close(): Promise<void>;
}

export function sampleDevice(extra: Partial<DeviceDescription> = {}): DeviceDescription {
  const bar0 = new Uint8Array(0x1000);
  return {
    vendorId: 0xdead,
    deviceId: 0xbeef,
    subsystemVendorId: 0xcafe,
    subsystemId: 0xbabe,
    classCode: 0xff0000,
    irqs: { intx: 1, msi: 4 },
    regions: {
      0: {
        size: 0x1000,
        read: (off, n) => bar0.slice(off, off + n),
        write: (off, d) => {
          bar0.set(d, off);
        },
      },
      1: { size: 0x4000, shared: { mmapAreas: [{ offset: 0, size: 0x1000 }, { offset: 0x2000, size: 0x2000 }] } },
    },
    ...extra,
  };
}

export function tempSocketPath(): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-user-client-'));
  return { path: join(dir, 'dev.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function startRig(
  kind: TransportKind,
  opts: { device?: DeviceDescription; server?: ServerOptions; client?: ClientOptions } = {},
): Promise<Rig> {
  const server = kind === 'dedicated' ? { ...opts.server, dedicatedThread: true } : opts.server ?? {};
  const ctx = new DeviceContext(opts.device ?? sampleDevice(), server);
  let client: VfioUserClient;
  let path: string | null = null;
  let cleanup = () => {};
  if (kind !== 'memory') {
    const t = tempSocketPath();
    path = t.path;
    cleanup = t.cleanup;
    await ctx.listen(path);
    client = await VfioUserClient.connect(path, opts.client ?? {});
  } else {
    const limits = VfioUserClient.transportLimits(opts.client?.maxDataXferSize);
    const [serverEnd, clientEnd] = createMemoryPair({ dupFd: native.dup, closeFd: native.close, limits });
    ctx.attach(serverEnd);
    client = await VfioUserClient.over(clientEnd, opts.client ?? {});
  }
  return {
    ctx,
    client,
    path,
    async close() {
      const gone = ctx.waitForDisconnect();
      await client.close();
      await gone;
      await ctx.close();
      cleanup();
    },
  };
}

/** Sets Memory Space and Bus Master Enable in the command register (DMA and MSI need BME). */
export async function enableBusMaster(client: VfioUserClient): Promise<void> {
  const cmd = await client.regionRead(7, 4, 2);
  const v = (cmd[0]! | (cmd[1]! << 8)) | 0x6;
  await client.regionWrite(7, 4, new Uint8Array([v & 0xff, v >> 8]));
}

export function randomBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
