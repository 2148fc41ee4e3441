// Two `vfio-user nvme` servers: the second is refused when the first holds
// the backing image (nothing resizes it), or when the first listens on the
// socket path (EADDRINUSE); the first keeps serving throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VfioUserClient } from '../../src/client/client.js';
import { BackingFileInUseError, Namespace } from '../../samples/nvme/namespace.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'bin', 'vfio-user.js');

function start(args: string[]): { exited: Promise<{ code: number | null; stderr: string }>; kill: () => void } {
  const child = spawn(process.execPath, [bin, 'nvme', ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  // A server that should have refused but serves instead is killed after a
  // while (a failure: code null) rather than hanging the test.
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 30000);
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(watchdog);
      resolve({ code, stderr });
    }),
  );
  return { exited, kill: () => child.kill('SIGTERM') };
}

async function waitFor(what: string, ok: () => boolean, ms = 20000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('nvme: a second server on the same image or the same socket is refused; the first keeps serving', { timeout: 90000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-nvme-excl-'));
  const image = join(dir, 'disk.img');
  const sock = join(dir, 'nvme.sock');
  const first = start(['--backing', image, '--size', '1M', sock]);
  try {
    await waitFor('the first server to listen', () => existsSync(sock));
    assert.equal(statSync(image).size, 1 << 20);

    const sameImage = await start(['--backing', image, '--size', '2M', join(dir, 'other.sock')]).exited;
    assert.equal(sameImage.code, 1, sameImage.stderr);
    assert.match(sameImage.stderr, /disk\.img is in use by another process/);
    assert.equal(statSync(image).size, 1 << 20, 'the image in use was not resized');
    assert.equal(existsSync(join(dir, 'other.sock')), false);

    const sameSocket = await start(['--backing', join(dir, 'disk2.img'), '--size', '1M', sock]).exited;
    assert.equal(sameSocket.code, 1, sameSocket.stderr);
    assert.match(sameSocket.stderr, /EADDRINUSE: .*nvme\.sock/);

    // The first server still answers at its path. The refused server's probe
    // was a connection to it that closed at once; a client arriving while
    // the first is still dropping that one is refused, so try again.
    let c: VfioUserClient | null = null;
    for (let i = 0; !c; i++) {
      c = await VfioUserClient.connect(sock).catch((e: Error) => {
        if (i >= 20) throw e;
        return new Promise<null>((r) => setTimeout(() => r(null), 100));
      });
    }
    assert.equal((await c.getDeviceInfo()).numRegions, 9);
    await c.close();

    // In-process too: the lock is what refuses, not the CLI.
    assert.throws(() => new Namespace({ path: image, size: 1 << 20, lock: true }), (e: unknown) => e instanceof BackingFileInUseError && e.path === image);
    // Without `lock` (a migration destination on shared storage) it opens.
    new Namespace({ path: image, size: 1 << 20 }).close();
  } finally {
    first.kill();
    const r = await first.exited;
    assert.equal(r.code, 0, r.stderr);
    rmSync(dir, { recursive: true, force: true });
  }
});
