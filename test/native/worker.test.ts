import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { nativeAddonPath, native } from '../../src/native/binding.js';

/** Runs a CommonJS snippet in a worker with `n` bound to the addon; resolves its first message and exit code. */
function runWorker(code: string, workerData: unknown, terminateAfterMessage = false): Promise<{ msg: unknown; exitCode: number }> {
  const script = `const { parentPort, workerData } = require('node:worker_threads');
    const n = require(${JSON.stringify(nativeAddonPath())});
    ${code}`;
  return new Promise((resolve, reject) => {
    const w = new Worker(script, { eval: true, workerData });
    let msg: unknown;
    w.on('message', (m) => {
      msg = m;
      if (terminateAfterMessage) void w.terminate();
    });
    w.on('error', reject);
    w.on('exit', (exitCode) => resolve({ msg, exitCode }));
  });
}

describe('native addon in worker_threads', () => {
  it('loads in a worker and can mmap a memfd shared with the main thread', async () => {
    const ps = native.pageSize();
    const fd = native.memfdCreate('shared', false);
    native.ftruncate(fd, ps);
    const main = new Uint8Array(native.mmap(fd, 0, ps, 3));
    main[10] = 0x11;
    const { msg, exitCode } = await runWorker(
      `const ab = n.mmap(workerData.fd, 0, workerData.ps, n.PROT_READ | n.PROT_WRITE);
       const u = new Uint8Array(ab);
       const seen = u[10];
       u[20] = 0x22;
       n.munmap(ab);
       parentPort.postMessage({ seen, len: u.length });`,
      { fd, ps },
    );
    assert.equal(exitCode, 0);
    assert.deepEqual(msg, { seen: 0x11, len: 0 });
    assert.equal(main[20], 0x22);
    native.munmap(main.buffer as ArrayBuffer);
    native.close(fd);
  });

  it('a worker can poll, and exits cleanly with an open unref\'d Poller and live mappings', async () => {
    const { msg, exitCode } = await runWorker(
      `const [a, b] = n.socketpair();
       const p = new n.Poller(b, (s, ev) => {
         parentPort.postMessage({ s, ev });
         p.unref(); // left open on purpose: the env cleanup hook must close it
       });
       p.start(n.READABLE);
       n.sendmsg(a, Uint8Array.of(1), 0, 1, null);
       const fd = n.memfdCreate('w', false); n.ftruncate(fd, 4096);
       globalThis.keep = [p, n.mmap(fd, 0, 4096, 3)];`,
      null,
    );
    assert.deepEqual(msg, { s: 0, ev: 1 });
    assert.equal(exitCode, 0);
  });

  it('terminate() of a worker with a ref\'d, started Poller does not crash the process', async () => {
    const { msg, exitCode } = await runWorker(
      `const [a, b] = n.socketpair();
       const p = new n.Poller(b, () => {});
       p.start(n.READABLE);
       globalThis.keep = [p, a];
       parentPort.postMessage('ready');`,
      null,
      true,
    );
    assert.equal(msg, 'ready');
    assert.equal(exitCode, 1);
  });
});
