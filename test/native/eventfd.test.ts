import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isNativeError, native } from '../../src/native/binding.js';

describe('native eventfd', () => {
  it('counts: write 3 + 4, read 7; empty non-blocking read is -1n', () => {
    const fd = native.eventfd(0, native.EFD_NONBLOCK);
    assert.equal(native.eventfdRead(fd), -1n);
    assert.equal(native.eventfdWrite(fd, 3), true);
    assert.equal(native.eventfdWrite(fd, 4n), true);
    assert.equal(native.eventfdRead(fd), 7n);
    assert.equal(native.eventfdRead(fd), -1n);
    native.close(fd);
  });

  it('initval is the starting count', () => {
    const fd = native.eventfd(5, native.EFD_NONBLOCK);
    assert.equal(native.eventfdRead(fd), 5n);
    native.close(fd);
  });

  it('semaphore mode reads 1 per read', () => {
    const fd = native.eventfd(0, native.EFD_NONBLOCK | native.EFD_SEMAPHORE);
    native.eventfdWrite(fd, 3);
    assert.deepEqual([native.eventfdRead(fd), native.eventfdRead(fd), native.eventfdRead(fd)], [1n, 1n, 1n]);
    assert.equal(native.eventfdRead(fd), -1n);
    native.close(fd);
  });

  it('a write that would overflow returns false; 2^64-1 is refused', () => {
    const fd = native.eventfd(0, native.EFD_NONBLOCK);
    assert.equal(native.eventfdWrite(fd, 2n ** 64n - 2n), true);
    assert.equal(native.eventfdWrite(fd, 1), false);
    assert.equal(native.eventfdRead(fd), 2n ** 64n - 2n);
    assert.throws(() => native.eventfdWrite(fd, 2n ** 64n - 1n), RangeError);
    assert.throws(() => native.eventfdWrite(fd, -1n), RangeError);
    native.close(fd);
  });

  it('fds are CLOEXEC; unknown flags and bad fds throw', async () => {
    const { readFileSync } = await import('node:fs');
    const fd = native.eventfd(0, 0);
    const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    const flags = parseInt(/flags:\s+(\d+)/.exec(info)![1]!, 8);
    assert.ok(flags & 0o2000000, 'CLOEXEC');
    assert.equal(flags & 0o4000, 0, 'blocking without EFD_NONBLOCK');
    native.close(fd);
    assert.throws(() => native.eventfd(0, 4), RangeError);
    assert.throws(() => native.eventfdRead(fd), (e) => isNativeError(e, 'EBADF') && e.syscall === 'read');
  });
});
