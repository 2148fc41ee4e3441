import assert from 'node:assert/strict';
import { chmodSync, closeSync, lstatSync, openSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isNativeError, native } from '../../src/native/binding.js';
import { countOpenFds, listOpenFds } from '../../src/native/fds.js';
import { tempDir } from './helpers/util.js';

/** A memfd whose size (1..n) identifies it after passing. */
function taggedFd(tag: number): number {
  const fd = native.memfdCreate(`tag${tag}`, false);
  native.ftruncate(fd, tag);
  return fd;
}

function closeAll(fds: Iterable<number>): void {
  for (const fd of fds) native.close(fd);
}

interface Msg {
  bytes: Uint8Array;
  tags: number[];
}

/**
 * Sends messages A (no fds), B (2 fds), C (1 fd), then receives in reads of
 * `chunk` bytes and checks that each read carries exactly the fds of the
 * messages whose first byte it contains.
 */
function roundTrip(chunk: number): void {
  const [a, b] = native.socketpair();
  const msgs: Msg[] = [
    { bytes: new Uint8Array(16).fill(0xa1), tags: [] },
    { bytes: new Uint8Array(16).fill(0xb2), tags: [1, 2] },
    { bytes: new Uint8Array(16).fill(0xc3), tags: [3] },
  ];
  try {
    const starts: number[] = [];
    let pos = 0;
    for (const m of msgs) {
      const fds = m.tags.map(taggedFd);
      starts.push(pos);
      pos += m.bytes.length;
      assert.equal(native.sendmsg(a, m.bytes, 0, m.bytes.length, fds.length ? fds : null), 16);
      closeAll(fds); // the kernel holds its own references now
    }
    const total = pos;
    const rbuf = new Uint8Array(total);
    const fdsOut = new Int32Array(2 + 8);
    let got = 0;
    let reads = 0;
    while (got < total) {
      const n = native.recvmsg(b, rbuf, got, Math.min(chunk, total - got), fdsOut);
      assert.ok(n > 0, `read ${reads} returned ${n}`);
      const expected = msgs.filter((_, i) => starts[i]! >= got && starts[i]! < got + n).flatMap((m) => m.tags);
      const received = Array.from(fdsOut.subarray(2, 2 + fdsOut[0]!));
      assert.equal(fdsOut[1], 0, 'no truncation');
      assert.deepEqual(
        received.map((fd) => native.fstatSize(fd)),
        expected,
        `read #${reads} of bytes [${got}, ${got + n}) carries the fds of the messages starting in it`,
      );
      for (const fd of received) assert.equal(native.fdType(fd), 'file');
      closeAll(received);
      got += n;
      reads++;
    }
    assert.deepEqual(
      rbuf,
      Uint8Array.from([...msgs[0]!.bytes, ...msgs[1]!.bytes, ...msgs[2]!.bytes]),
    );
    assert.equal(native.recvmsg(b, rbuf, 0, 1, fdsOut), -1, 'EAGAIN when drained');
    assert.equal(fdsOut[0], 0);
  } finally {
    native.close(a);
    native.close(b);
  }
}

describe('native sockets: SCM_RIGHTS', () => {
  it('fds arrive with the recvmsg that reads their message\'s first byte (20-byte reads)', () => {
    roundTrip(20);
  });
  it('fds arrive with the right message when reads coalesce (64-byte reads)', () => {
    roundTrip(64);
  });
  it('fds arrive with the right message in 16-byte and 7-byte reads', () => {
    roundTrip(16);
    roundTrip(7);
  });

  it('fds pass both ways across a socketpair', () => {
    const [a, b] = native.socketpair();
    const out = new Int32Array(4);
    const buf = new Uint8Array(4);
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const fd = taggedFd(7);
      assert.equal(native.sendmsg(from, Uint8Array.of(1, 2, 3), 0, 3, [fd]), 3);
      native.close(fd);
      assert.equal(native.recvmsg(to, buf, 0, 4, out), 3);
      assert.equal(out[0], 1);
      assert.equal(native.fstatSize(out[2]!), 7);
      native.close(out[2]!);
    }
    closeAll([a, b]);
  });

  it('MSG_CTRUNC is reported when fdsOut is too small, and excess fds are closed', () => {
    const base = countOpenFds();
    const [a, b] = native.socketpair();
    const buf = new Uint8Array(8);
    for (const room of [0, 1, 2]) {
      const fds = [taggedFd(1), taggedFd(2), taggedFd(3)];
      assert.equal(native.sendmsg(a, Uint8Array.of(9), 0, 1, fds), 1);
      closeAll(fds);
      const out = new Int32Array(2 + room);
      assert.equal(native.recvmsg(b, buf, 0, 8, out), 1);
      assert.equal(out[0], room, `kept ${room} fds`);
      assert.equal(out[1]! & 1, 1, 'truncation flag');
      const kept = Array.from(out.subarray(2, 2 + out[0]!));
      assert.deepEqual(kept.map((fd) => native.fstatSize(fd)), [1, 2, 3].slice(0, room));
      closeAll(kept);
      assert.equal(countOpenFds(), base + 2, `no fd leaked with room for ${room}`);
    }
    closeAll([a, b]);
    assert.equal(countOpenFds(), base);
  });

  it('a received fd that is dropped, and fds never received, are closed', () => {
    const before = listOpenFds();
    const [a, b] = native.socketpair();
    const sent = [taggedFd(1), taggedFd(2)];
    native.sendmsg(a, Uint8Array.of(1), 0, 1, sent);
    closeAll(sent);
    const out = new Int32Array(3);
    assert.equal(native.recvmsg(b, new Uint8Array(1), 0, 1, out), 1);
    assert.equal(out[0], 1, 'one kept, one dropped for lack of room');
    assert.equal(out[1], 1);
    native.close(out[2]!); // the receiver drops the one it got
    const kept = taggedFd(9); // the sender keeps its own copy of this one
    native.sendmsg(a, Uint8Array.of(2), 0, 1, [kept]); // never received
    assert.deepEqual(listOpenFds().filter((fd) => !before.includes(fd)).sort(), [a, b, kept].sort());
    closeAll([a, b]);
    assert.deepEqual(listOpenFds().filter((fd) => !before.includes(fd)), [kept]);
    native.close(kept);
    assert.deepEqual(listOpenFds(), before);
  });

  it('sendmsg rejects fds with a zero-length payload', () => {
    const [a, b] = native.socketpair();
    assert.throws(() => native.sendmsg(a, new Uint8Array(1), 0, 0, [a]), (e) => isNativeError(e, 'EINVAL'));
    assert.equal(native.sendmsg(a, new Uint8Array(1), 0, 0, null), 0);
    closeAll([a, b]);
  });

  it('offset/length are bounds-checked', () => {
    const [a, b] = native.socketpair();
    assert.throws(() => native.sendmsg(a, new Uint8Array(4), 2, 3, null), RangeError);
    assert.throws(() => native.recvmsg(b, new Uint8Array(4), 5, 0, new Int32Array(2)), RangeError);
    assert.throws(() => native.recvmsg(b, new Uint8Array(4), 0, 4, new Int32Array(1)), TypeError);
    closeAll([a, b]);
  });
});

describe('native sockets: stream behaviour', () => {
  it('a 1 MiB sendmsg on a non-blocking socket is partial, then EAGAIN (-1)', () => {
    const [a, b] = native.socketpair();
    const big = new Uint8Array(1 << 20);
    const n = native.sendmsg(a, big, 0, big.length, null);
    assert.ok(n > 0 && n < big.length, `partial write, got ${n}`);
    assert.equal(native.sendmsg(a, big, n, big.length - n, null), -1);
    // Draining the reader makes room again.
    const rbuf = new Uint8Array(1 << 20);
    const out = new Int32Array(2);
    let got = 0;
    for (let r; (r = native.recvmsg(b, rbuf, 0, rbuf.length, out)) > 0; ) got += r;
    assert.equal(got, n);
    assert.ok(native.sendmsg(a, big, n, big.length - n, null) > 0);
    closeAll([a, b]);
  });

  it('recvmsg returns 0 at EOF and -1 when empty', () => {
    const [a, b] = native.socketpair();
    const out = new Int32Array(2);
    assert.equal(native.recvmsg(b, new Uint8Array(4), 0, 4, out), -1);
    native.shutdown(a, 1);
    assert.equal(native.recvmsg(b, new Uint8Array(4), 0, 4, out), 0);
    closeAll([a, b]);
  });

  it('peerCred returns our pid/uid/gid', () => {
    const [a, b] = native.socketpair();
    assert.deepEqual(native.peerCred(a), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    closeAll([a, b]);
  });

  it('listen/connect/accept over a path; listen sets mode 0600 and custom modes exactly', () => {
    const { dir, cleanup } = tempDir();
    const oldUmask = process.umask(0o022);
    try {
      for (const [mode, umask] of [
        [0o600, 0o022],
        [0o660, 0o022],
        [0o666, 0o077],
        [0o600, 0],
        [0o700, 0o177],
      ] as const) {
        process.umask(umask);
        const path = join(dir, `s-${mode.toString(8)}-${umask.toString(8)}`);
        const l = native.listen(path, mode, 4);
        const st = statSync(path);
        assert.ok(st.isSocket());
        assert.equal(st.mode & 0o7777, mode, `mode ${mode.toString(8)} under umask ${umask.toString(8)}`);
        assert.equal(native.accept(l), -1, 'nothing pending');
        const c = native.connect(path);
        const s = native.accept(l);
        assert.ok(s >= 0);
        assert.equal(native.sendmsg(c, Uint8Array.of(42), 0, 1, null), 1);
        const buf = new Uint8Array(1);
        assert.equal(native.recvmsg(s, buf, 0, 1, new Int32Array(2)), 1);
        assert.equal(buf[0], 42);
        assert.equal(native.peerCred(s).pid, process.pid);
        closeAll([c, s, l]);
      }
    } finally {
      process.umask(oldUmask);
      cleanup();
    }
  });

  it('new sockets are non-blocking and CLOEXEC', async () => {
    const { readFileSync } = await import('node:fs');
    const [a, b] = native.socketpair();
    const d = native.dup(a);
    for (const fd of [a, b, d]) {
      const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      const flags = parseInt(/flags:\s+(\d+)/.exec(info)![1]!, 8);
      assert.ok(flags & 0o2000000, `fd ${fd} CLOEXEC`);
      if (fd !== d) assert.ok(flags & 0o4000, `fd ${fd} O_NONBLOCK`);
    }
    native.setNonBlocking(a, false);
    const info = readFileSync(`/proc/self/fdinfo/${a}`, 'utf8');
    assert.equal(parseInt(/flags:\s+(\d+)/.exec(info)![1]!, 8) & 0o4000, 0);
    closeAll([a, b, d]);
  });
});

describe('native errors', () => {
  const shape = (code: string, syscall: string) => (e: unknown) => {
    assert.ok(isNativeError(e, code), `expected ${code}, got ${String(e)}`);
    assert.equal(e.syscall, syscall);
    assert.equal(typeof e.errno, 'number');
    assert.ok(e.errno > 0);
    assert.match(e.message, new RegExp(`^${syscall.replace(/[()]/g, '\\$&')}: ${code} \\(.+\\)$`));
    return true;
  };
  /** connect() and listen() errors also name the socket path (the message and `path`). */
  const pathShape = (code: string, syscall: string, path: string) => (e: unknown) => {
    assert.ok(isNativeError(e, code), `expected ${code}, got ${String(e)}`);
    assert.equal(e.syscall, syscall);
    assert.equal((e as { path?: string }).path, path);
    assert.equal(e.message, `${syscall} ${path}: ${code} (${(e.cause as Error).message.replace(/^.*\(/, '').replace(/\)$/, '')})`);
    return true;
  };

  it('carry code/errno/syscall and a "syscall: CODE (text)" message ("syscall PATH: CODE (text)" for connect/listen)', () => {
    const { dir, cleanup } = tempDir();
    try {
      assert.throws(() => native.close(987654), shape('EBADF', 'close'));
      assert.throws(() => native.connect(join(dir, 'missing')), pathShape('ENOENT', 'connect', join(dir, 'missing')));
      assert.throws(() => native.listen(join(dir, 'no', 'such'), 0o600, 1), pathShape('ENOENT', 'bind', join(dir, 'no', 'such')));
      const p = join(dir, 'busy');
      const l = native.listen(p, 0o600, 1);
      assert.throws(() => native.listen(p, 0o600, 1), pathShape('EADDRINUSE', 'bind', p));
      native.close(l);
      assert.throws(() => native.connect(p), pathShape('ECONNREFUSED', 'connect', p));
      assert.throws(() => native.listen('x'.repeat(200), 0o600, 1), pathShape('ENAMETOOLONG', 'listen', 'x'.repeat(200)));
      try {
        native.close(987654);
      } catch (e) {
        assert.ok(isNativeError(e));
        assert.equal(e.errno, 9);
        assert.equal(e.message, 'close: EBADF (Bad file descriptor)');
      }
    } finally {
      cleanup();
    }
  });

  it('EPIPE from sendmsg to a closed peer (no SIGPIPE), ECONNRESET from recvmsg', () => {
    const [a, b] = native.socketpair();
    native.close(b);
    assert.throws(() => native.sendmsg(a, Uint8Array.of(1), 0, 1, null), shape('EPIPE', 'sendmsg'));
    native.close(a);
    const [c, d] = native.socketpair();
    native.sendmsg(c, Uint8Array.of(1), 0, 1, null);
    native.close(d); // unread data: the peer sees a reset
    assert.throws(() => native.recvmsg(c, new Uint8Array(1), 0, 1, new Int32Array(2)), shape('ECONNRESET', 'recvmsg'));
    native.close(c);
  });

  it('argument errors are TypeError/RangeError, not errno errors', () => {
    assert.throws(() => native.close(-1), RangeError);
    assert.throws(() => native.close(1.5), RangeError);
    assert.throws(() => native.dup('3' as unknown as number), TypeError);
    assert.equal(isNativeError(new Error('x')), false);
  });

  it('fdType classifies sockets, memfds, eventfds and char devices', async () => {
    const { openSync, closeSync } = await import('node:fs');
    const [a, b] = native.socketpair();
    const m = native.memfdCreate('t', false);
    const e = native.eventfd(0, 0);
    const n = openSync('/dev/null', 'r');
    assert.deepEqual([a, m, e, n].map(native.fdType), ['socket', 'file', 'anon', 'char']);
    closeSync(n);
    closeAll([a, b, m, e]);
    assert.throws(() => native.fdType(a), (err) => isNativeError(err, 'EBADF'));
  });
});

describe('native sockets: listen never replaces, never follows, never leaves anything behind', () => {
  const entries = (dir: string): string[] => readdirSync(dir).sort();

  it('only the socket file appears in the directory; a failed listen leaves the directory as it was', () => {
    const { dir, cleanup } = tempDir();
    try {
      const p = join(dir, 'sock');
      const l = native.listen(p, 0o600, 1);
      assert.deepEqual(entries(dir), ['sock'], 'no private directory left over');
      assert.throws(() => native.listen(p, 0o600, 1), (e) => isNativeError(e, 'EADDRINUSE'));
      assert.deepEqual(entries(dir), ['sock']);
      // The first socket still answers at the path.
      const c = native.connect(p);
      assert.ok(native.accept(l) >= 0);
      closeAll([c, l]);
    } finally {
      cleanup();
    }
  });

  it('a symlink or a regular file at the path is neither followed nor replaced', () => {
    const { dir, cleanup } = tempDir();
    try {
      const target = join(dir, 'target');
      writeFileSync(target, 'keep');
      chmodSync(target, 0o644);
      const link = join(dir, 'link');
      symlinkSync(target, link);
      assert.throws(() => native.listen(link, 0o666, 1), (e) => isNativeError(e, 'EADDRINUSE'));
      assert.throws(() => native.listen(target, 0o666, 1), (e) => isNativeError(e, 'EADDRINUSE'));
      assert.equal(statSync(target).mode & 0o7777, 0o644, 'target mode untouched');
      assert.equal(readFileSync(target, 'utf8'), 'keep');
      assert.ok(lstatSync(link).isSymbolicLink());
      assert.deepEqual(entries(dir), ['link', 'target']);
    } finally {
      cleanup();
    }
  });

  it('a path that fits a sockaddr_un but whose private name would not still works, mode exact', () => {
    const { dir, cleanup } = tempDir();
    try {
      // 107 bytes, the longest sun_path allows; the private name beside it is longer.
      const p = join(dir, 'x'.repeat(107 - dir.length - 1));
      assert.equal(p.length, 107);
      const old = process.umask(0o077);
      let l: number;
      try {
        l = native.listen(p, 0o660, 1);
      } finally {
        process.umask(old);
      }
      assert.equal(statSync(p).mode & 0o7777, 0o660);
      assert.deepEqual(entries(dir), [p.slice(dir.length + 1)]);
      const c = native.connect(p);
      assert.ok(native.accept(l) >= 0);
      closeAll([c, l]);
    } finally {
      cleanup();
    }
  });
});

describe('native sockets: sendmsg and a buffer detached while the fds are read', () => {
  it('an fd getter that detaches the buffer makes sendmsg fail its bounds check; nothing is sent', () => {
    const [a, b] = native.socketpair();
    const m = native.memfdCreate('t', false);
    try {
      const buf = new Uint8Array(4096).fill(7);
      const fds: number[] = [];
      Object.defineProperty(fds, 0, {
        enumerable: true,
        get() {
          // Moves the bytes away: the buffer the caller passed is now detached (length 0).
          structuredClone(buf.buffer, { transfer: [buf.buffer] });
          return m;
        },
      });
      assert.throws(() => native.sendmsg(a, buf, 0, 4096, fds), RangeError);
      assert.equal(buf.byteLength, 0);
      assert.equal(native.recvmsg(b, new Uint8Array(16), 0, 16, new Int32Array(4)), -1, 'nothing was sent');
    } finally {
      closeAll([a, b, m]);
    }
  });
});

describe('native flock', () => {
  it('exclusive excludes every other open file description; shared locks coexist; unlock and close release', () => {
    const { dir, cleanup } = tempDir();
    const p = join(dir, 'image');
    writeFileSync(p, '');
    const f1 = openSync(p, 'r+');
    const f2 = openSync(p, 'r+');
    try {
      assert.equal(native.flock(f1, 2), true);
      assert.equal(native.flock(f2, 2), false, 'second exclusive refused, without waiting');
      assert.equal(native.flock(f2, 1), false, 'shared refused while exclusive is held');
      assert.equal(native.flock(f1, 0), true);
      assert.equal(native.flock(f1, 1), true);
      assert.equal(native.flock(f2, 1), true, 'shared locks coexist');
      assert.equal(native.flock(f2, 2), false);
      closeSync(f1);
      assert.equal(native.flock(f2, 2), true, 'the close released the other lock');
      assert.throws(() => native.flock(987654, 2), (e) => isNativeError(e, 'EBADF'));
    } finally {
      closeSync(f2);
      cleanup();
    }
  });
});
