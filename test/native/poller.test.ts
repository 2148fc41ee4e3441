import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { isNativeError, nativeAddonPath, native } from '../../src/native/binding.js';
import { collect, sleep, waitFor } from './helpers/util.js';

const { READABLE, WRITABLE } = native;

/** Runs a CommonJS snippet in a child node with `n` bound to the addon. */
function runChild(code: string, timeoutMs: number): Promise<{ code: number | null; ms: number; stderr: string; timedOut: boolean }> {
  const script = `const n = require(${JSON.stringify(nativeAddonPath())});\n${code}`;
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, ms: Date.now() - t0, stderr, timedOut });
    });
  });
}

describe('native Poller', () => {
  it('exports the UV event bits', () => {
    assert.deepEqual([native.READABLE, native.WRITABLE, native.DISCONNECT], [1, 2, 4]);
  });

  it('fires READABLE when data arrives, and not before', async () => {
    const [a, b] = native.socketpair();
    const seen: Array<[number, number]> = [];
    const p = new native.Poller(b, (status, events) => {
      seen.push([status, events]);
      native.recvmsg(b, new Uint8Array(16), 0, 16, new Int32Array(2)); // drain (level-triggered)
    });
    p.start(READABLE);
    await sleep(20);
    assert.equal(seen.length, 0);
    native.sendmsg(a, Uint8Array.of(1), 0, 1, null);
    await waitFor(() => seen.length > 0, 2000, 'readable');
    assert.deepEqual(seen[0], [0, READABLE]);
    p.close();
    native.close(a);
    native.close(b);
  });

  it('fires WRITABLE on a writable socket; stop() silences it; start() resumes', async () => {
    const [a, b] = native.socketpair();
    let count = 0;
    let last = 0;
    const p = new native.Poller(a, (_s, ev) => {
      count++;
      last = ev;
      p.stop();
    });
    p.start(WRITABLE);
    await waitFor(() => count === 1, 2000, 'writable');
    assert.equal(last & WRITABLE, WRITABLE);
    await sleep(20);
    assert.equal(count, 1, 'stopped');
    p.start(WRITABLE | READABLE);
    await waitFor(() => count === 2, 2000, 'writable again');
    p.close();
    native.close(a);
    native.close(b);
  });

  it('runs promise microtasks after each callback (MakeCallback semantics)', async () => {
    const [a1, b1] = native.socketpair();
    const [a2, b2] = native.socketpair();
    native.sendmsg(a1, Uint8Array.of(1), 0, 1, null);
    native.sendmsg(a2, Uint8Array.of(1), 0, 1, null);
    const log: string[] = [];
    const make = (fd: number, name: string) => {
      const p = new native.Poller(fd, () => {
        log.push(name);
        p.close();
        void Promise.resolve().then(() => log.push(`${name}:micro`));
      });
      return p;
    };
    // Both become ready in the same loop iteration.
    make(b1, 'one').start(READABLE);
    make(b2, 'two').start(READABLE);
    await waitFor(() => log.length === 4, 2000, 'both callbacks');
    assert.equal(log[1], `${log[0]}:micro`, `microtask ran before the next callback: ${log.join(',')}`);
    for (const fd of [a1, b1, a2, b2]) native.close(fd);
  });

  it('close() inside the callback is safe, idempotent, and stops further callbacks', async () => {
    const [a, b] = native.socketpair();
    let calls = 0;
    const p = new native.Poller(b, () => {
      calls++;
      p.close();
      p.close();
    });
    p.start(READABLE);
    native.sendmsg(a, Uint8Array.of(1, 2), 0, 2, null); // never drained: level-triggered would refire
    await sleep(50);
    assert.equal(calls, 1);
    p.close();
    p.stop();
    p.ref();
    p.unref();
    assert.throws(() => p.start(READABLE), (e) => isNativeError(e, 'EBADF'));
    await collect();
    native.close(a);
    native.close(b);
  });

  it('a started Poller keeps working when its JS object is dropped; dropped closed/idle Pollers are collected', async () => {
    const [a, b] = native.socketpair();
    // Which Pollers the collector has freed, by tag.
    const collected = new Set<string>();
    const registry = new FinalizationRegistry<string>((tag) => void collected.add(tag));
    const collectUntil = async (done: () => boolean): Promise<void> => {
      for (let i = 0; i < 40 && !done(); i++) await collect(2);
    };
    let calls = 0;
    (() => {
      const p = new native.Poller(b, () => {
        calls++;
        p.close();
      });
      p.start(READABLE);
      registry.register(p, 'started');
      for (let i = 0; i < 20; i++) registry.register(new native.Poller(a, () => {}), `idle${i}`); // never started
      const c = new native.Poller(a, () => {});
      c.start(READABLE);
      c.close();
      registry.register(c, 'closed');
    })();
    await collectUntil(() => collected.size >= 21);
    assert.equal([...collected].filter((t) => t.startsWith('idle')).length, 20, 'every dropped idle Poller was collected');
    assert.ok(collected.has('closed'), 'a dropped closed Poller was collected');
    assert.equal(collected.has('started'), false, 'a started Poller is not collected while it watches');
    native.sendmsg(a, Uint8Array.of(1), 0, 1, null);
    await waitFor(() => calls === 1, 2000, 'callback after gc');
    // It closed itself in the callback: from then on nothing holds it.
    await collectUntil(() => collected.has('started'));
    assert.ok(collected.has('started'), 'collected once closed');
    native.close(a);
    native.close(b);
  });

  it('reports uv_poll_init errors with code/errno/syscall', () => {
    const fd = native.memfdCreate('regular', false); // regular files cannot be polled by epoll
    assert.throws(
      () => new native.Poller(fd, () => {}),
      (e) => isNativeError(e, 'EPERM') && e.syscall === 'uv_poll_init',
    );
    native.close(fd);
  });

  it('an unref\'d started Poller does not keep the process alive (a ref\'d one does)', async () => {
    const body = (unref: boolean) => `
      const [a, b] = n.socketpair();
      const p = new n.Poller(b, () => {});
      p.start(n.READABLE);
      ${unref ? 'p.unref();' : ''}
      globalThis.keep = [p, a];`;
    const unrefd = await runChild(body(true), 5000);
    assert.equal(unrefd.timedOut, false, 'unrefd child exited');
    assert.equal(unrefd.code, 0, unrefd.stderr);
    const refd = await runChild(body(false), 800);
    assert.equal(refd.timedOut, true, 'a ref\'d started poller keeps the child alive');
    const closed = await runChild(`${body(false)}\n p.close();`, 5000);
    assert.equal(closed.timedOut, false, 'closed poller released the loop');
    assert.equal(closed.code, 0, closed.stderr);
  });

  it('an exception thrown in the callback is an uncaught exception', async () => {
    const r = await runChild(
      `const [a, b] = n.socketpair();
       process.on('uncaughtException', (e) => { console.error('caught:' + e.message); process.exit(3); });
       const p = new n.Poller(a, () => { throw new Error('boom'); });
       p.start(n.WRITABLE);`,
      5000,
    );
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /caught:boom/);
  });
});
