import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../../cli/main.js';
import { parseSize } from '../../cli/nvme.js';

test('nvme CLI: sizes and argument errors', async () => {
  assert.equal(parseSize('64M'), 64 << 20);
  assert.equal(parseSize('1G'), 1 << 30);
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('512k'), 512 << 10);
  assert.equal(parseSize('2MiB'), 2 << 20);
  assert.throws(() => parseSize('100'), /multiple of 512/);
  assert.throws(() => parseSize('lots'), /bad size/);
  let err = '';
  const io = { out: () => {}, err: (s: string) => void (err += s) };
  const usage = async (argv: string[], why: RegExp): Promise<void> => {
    err = '';
    assert.equal(await main(['nvme', ...argv], io), 2, argv.join(' '));
    assert.match(err, why);
    assert.match(err, /usage: vfio-user nvme/);
  };
  await usage(['--size', '1M', 'sock'], /--backing FILE is required/);
  await usage(['--backing', 'x', 'sock'], /--size SIZE is required/);
  await usage(['--backing', 'x', '--size', '1M'], /missing SOCKET/);
  await usage(['--backing', 'x', '--size', '1M', '--bogus', 's'], /unknown option --bogus/);
  await usage(['--backing', 'x', '--size', '100', 's'], /multiple of 512/);
  await usage(['s', '--backing'], /option --backing needs a value/);
  for (const n of ['0', '17', 'two', '1.5', '']) await usage(['--backing', 'x', '--size', '1M', '--io-workers', n, 's'], /--io-workers wants a number of threads/);
  await usage(['--backing', 'x', '--size', '1M', '--sync-io-max', 'lots', 's'], /--sync-io-max wants a byte count/);
});
