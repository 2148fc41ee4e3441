import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nvmeCommand, parseSize } from '../../cli/nvme.js';

test('nvme CLI: sizes and argument errors', async () => {
  assert.equal(parseSize('64M'), 64 << 20);
  assert.equal(parseSize('1G'), 1 << 30);
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('512k'), 512 << 10);
  assert.equal(parseSize('2MiB'), 2 << 20);
  assert.throws(() => parseSize('100'), /multiple of 512/);
  assert.throws(() => parseSize('lots'), /bad size/);
  const err = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    assert.equal(await nvmeCommand(['--size', '1M', 'sock']), 2, 'no backing file');
    assert.equal(await nvmeCommand(['--backing', 'x']), 2, 'no size');
    assert.equal(await nvmeCommand(['--backing', 'x', '--size', '1M']), 2, 'no socket');
    assert.equal(await nvmeCommand(['--backing', 'x', '--size', '1M', '--bogus', 's']), 2, 'unknown option');
  } finally {
    process.stderr.write = err;
  }
});
