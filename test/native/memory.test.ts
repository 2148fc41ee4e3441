import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isNativeError, native } from '../../src/native/binding.js';
import { collect } from './helpers/util.js';

const PS = native.pageSize();

function memfd(size: number, sealing = false, name = 'mem'): number {
  const fd = native.memfdCreate(name, sealing);
  native.ftruncate(fd, size);
  return fd;
}

/** Lines of /proc/self/maps for memfd `name`. */
function mapsOf(name: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes(`/memfd:${name} `)).length;
}

describe('native memfd + mmap', () => {
  it('pageSize is a power of two', () => {
    assert.ok(PS >= 4096 && (PS & (PS - 1)) === 0);
  });

  it('two mappings of one memfd see each other\'s writes', () => {
    const fd = memfd(4 * PS);
    const whole = native.mmap(fd, 0, 4 * PS, native.PROT_READ | native.PROT_WRITE);
    const part = native.mmap(fd, BigInt(2 * PS), PS, native.PROT_READ | native.PROT_WRITE);
    const w = new Uint8Array(whole);
    const p = new Uint8Array(part);
    w[2 * PS + 5] = 0x5a;
    assert.equal(p[5], 0x5a);
    new DataView(part).setUint32(100, 0xdeadbeef, true);
    assert.equal(new DataView(whole).getUint32(2 * PS + 100, true), 0xdeadbeef);
    native.msync(whole, 3, 10);
    native.munmap(whole);
    native.munmap(part);
    native.close(fd);
  });

  it('a worker-style second mmap of the same fd after close of the first still sees data', () => {
    const fd = memfd(PS);
    const a = native.mmap(fd, 0, PS, 3);
    new Uint8Array(a).set([1, 2, 3]);
    native.munmap(a);
    const b = native.mmap(fd, 0, PS, native.PROT_READ);
    assert.deepEqual(Array.from(new Uint8Array(b, 0, 3)), [1, 2, 3]);
    native.munmap(b);
    native.close(fd);
  });

  it('munmap detaches: views read length 0, access does not crash, second munmap is a no-op', async () => {
    const fd = memfd(PS, false, 'detach');
    const ab = native.mmap(fd, 0, PS, 3);
    const u8 = new Uint8Array(ab);
    const dv = new DataView(ab, 8);
    u8[0] = 1;
    assert.equal(mapsOf('detach'), 1);
    native.munmap(ab);
    assert.equal(mapsOf('detach'), 0, 'unmapped at once');
    assert.equal(ab.byteLength, 0);
    assert.equal(u8.length, 0);
    assert.equal(u8[0], undefined);
    u8[0] = 7; // ignored on a detached buffer
    assert.throws(() => dv.getUint8(0), TypeError);
    native.munmap(ab);
    assert.throws(() => native.msync(ab, 0, 1), (e) => isNativeError(e, 'EINVAL'));
    // The finalizer runs later and must not unmap again (a fresh mapping may
    // now sit at the same address).
    const again = native.mmap(fd, 0, PS, 3);
    await collect();
    new Uint8Array(again)[1] = 2;
    assert.equal(new Uint8Array(again)[1], 2);
    assert.equal(mapsOf('detach'), 1);
    native.munmap(again);
    native.close(fd);
  });

  it('the GC finalizer unmaps a dropped mapping', async () => {
    const fd = memfd(PS, false, 'dropped');
    (() => {
      for (let i = 0; i < 8; i++) new Uint8Array(native.mmap(fd, 0, PS, 1))[0];
    })();
    assert.equal(mapsOf('dropped'), 8);
    await collect(5);
    assert.equal(mapsOf('dropped'), 0);
    native.close(fd);
  });

  it('rejects unaligned offsets (EINVAL), beyond-EOF ranges (ENXIO), > 4 GiB (ERANGE), foreign buffers', () => {
    const fd = memfd(2 * PS);
    const code = (c: string) => (e: unknown) => isNativeError(e, c) && e.syscall === 'mmap';
    assert.throws(() => native.mmap(fd, 1, PS, 1), code('EINVAL'));
    assert.throws(() => native.mmap(fd, 0, 0, 1), code('EINVAL'));
    assert.throws(() => native.mmap(fd, 0, PS, 0), code('EINVAL'));
    assert.throws(() => native.mmap(fd, PS, 2 * PS, 1), code('ENXIO'));
    assert.throws(() => native.mmap(fd, 0, 2 ** 32 + PS, 1), code('ERANGE'));
    assert.throws(() => native.munmap(new ArrayBuffer(8)), (e) => isNativeError(e, 'EINVAL'));
    native.close(fd);
  });

  it('revoke: detaches, unmaps all but the kept pages, which become placeholders until released', () => {
    const fd = memfd(8 * PS, false, 'revoked');
    const before = native.placeholderCount();
    const bad = native.mmap(fd, 0, 8 * PS, 3);
    assert.throws(() => native.revoke(bad, [1, PS]), (e) => isNativeError(e, 'EINVAL'), 'unaligned range');
    assert.throws(() => native.revoke(bad, [2 * PS, PS, PS, PS]), (e) => isNativeError(e, 'EINVAL'), 'unsorted ranges');
    assert.throws(() => native.revoke(bad, [0, 9 * PS]), RangeError, 'outside the mapping');
    assert.equal(new Uint8Array(bad).length, 8 * PS, 'a refused revoke leaves the mapping alone');
    const view = new Uint8Array(bad, PS, 16);
    const tokens = native.revoke(bad, [PS, PS, 4 * PS, 2 * PS]);
    assert.equal(tokens.length, 2);
    assert.equal(view.length, 0, 'detached like munmap');
    assert.equal(mapsOf('revoked'), 0, 'no page of the memfd stays mapped');
    assert.equal(native.placeholderCount(), before + 2);
    assert.throws(() => native.revoke(bad, []), (e) => isNativeError(e, 'EINVAL'), 'already revoked');
    for (const t of tokens) native.releasePlaceholder(t);
    native.releasePlaceholder(tokens[0]!); // unknown now: ignored
    assert.equal(native.placeholderCount(), before);
    native.close(fd);
  });

  it('maps exactly 4 GiB of a sparse memfd', () => {
    const fd = memfd(0);
    native.ftruncate(fd, 2n ** 32n + BigInt(PS));
    assert.equal(native.fstatSize(fd), 2 ** 32 + PS);
    const ab = native.mmap(fd, 0, 2 ** 32, 3);
    assert.equal(ab.byteLength, 2 ** 32);
    const u8 = new Uint8Array(ab);
    u8[2 ** 32 - 1] = 9;
    native.madviseDontDump(ab);
    native.munmap(ab);
    const tail = native.mmap(fd, 2n ** 32n - BigInt(PS), PS, 1);
    assert.equal(new Uint8Array(tail)[PS - 1], 9);
    native.munmap(tail);
    native.close(fd);
  });

  it('seals: add/get, F_SEAL_SHRINK blocks shrinking, -1 for non-sealable fds', () => {
    const fd = memfd(PS, true);
    assert.equal(native.getSeals(fd), 0);
    native.addSeals(fd, native.F_SEAL_SHRINK | native.F_SEAL_GROW);
    assert.equal(native.getSeals(fd), native.F_SEAL_SHRINK | native.F_SEAL_GROW);
    assert.throws(() => native.ftruncate(fd, 0), (e) => isNativeError(e, 'EPERM'));
    native.addSeals(fd, native.F_SEAL_SEAL);
    assert.throws(() => native.addSeals(fd, native.F_SEAL_WRITE), (e) => isNativeError(e, 'EPERM'));
    const plain = memfd(PS, false);
    assert.equal(native.getSeals(plain), native.F_SEAL_SEAL, 'no MFD_ALLOW_SEALING: sealed against sealing');
    const [a, b] = native.socketpair();
    assert.equal(native.getSeals(a), -1);
    for (const f of [fd, plain, a, b]) native.close(f);
    assert.throws(() => native.getSeals(fd), (e) => isNativeError(e, 'EBADF'));
  });
});
