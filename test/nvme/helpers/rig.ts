// What the NVMe sample's in-process tests share: a device with its client
// and host driver torn down in the right order, and reproducible data.
import { rmSync } from 'node:fs';
import type { NvmeHost } from '../../../samples/nvme/host.js';
import type { VfioUserClient } from '../../../src/client/index.js';

/** A device, the client attached to it, the host driver, and the temp dir holding the backing file. */
export interface NvmeRig<D extends { close(): Promise<void> }> {
  dev: D;
  client: VfioUserClient;
  host: NvmeHost;
  backing: string;
  /** Stops the host, closes client and device, removes the temp dir. */
  close(): Promise<void>;
}

/** Bundles a started device, client and host with their teardown. */
export function nvmeRig<D extends { close(): Promise<void> }>(dev: D, client: VfioUserClient, host: NvmeHost, backing: string, dir: string): NvmeRig<D> {
  return {
    dev,
    client,
    host,
    backing,
    async close() {
      host.stop();
      await client.close();
      await dev.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `len` pseudo-random bytes, the same for the same seed. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
