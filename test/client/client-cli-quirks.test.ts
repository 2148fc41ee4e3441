// `vfio-user client` against a server that is not ours: a feature it did not
// advertise is skipped, a failing check does not stop the run (migration
// included), and the exit code says whether anything failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientCommand } from '../../cli/client.js';
import type { CliIo } from '../../cli/types.js';
import { silentLogger } from '../../src/util/logger.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { Errno } from '../../src/protocol/errno.js';
import { createLvuQuirksServer } from '../helpers/lvu-quirks-server.js';

async function runClient(sock: string): Promise<{ code: number; out: string }> {
  let out = '';
  const io: CliIo = { logger: silentLogger, verbose: false, out: (t) => void (out += t), err: (t) => void (out += t) };
  const code = await clientCommand.run({ values: {}, positionals: [sock] }, io);
  return { code, out };
}

const lines = (out: string, prefix: string): string[] => out.split('\n').filter((l) => l.startsWith(prefix));

test('client vs a libvfio-user-like server: write_multiple skipped, the BAR1 read bug fails its checks, the rest runs and migrates', { timeout: 90000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-quirks-'));
  const sock = join(dir, 'dev.sock');
  const dev = createLvuQuirksServer();
  await dev.ctx.listen(sock);
  try {
    const { code, out } = await runClient(sock);
    assert.equal(code, 1, out);
    assert.deepEqual(lines(out, '  skip'), ['  skip  REGION_WRITE_MULTI: the server did not advertise write_multiple']);
    // Exactly the checks that read BAR1 at an offset fail.
    assert.deepEqual(
      lines(out, '  FAIL').map((l) => l.replace(/:.*$/, '')),
      ['  FAIL  REGION_WRITE/READ of BAR1', '  FAIL  region mmap'],
      out,
    );
    // Everything after them still ran: DMA, interrupts, migration, the destination.
    assert.match(out, /ok {4}device DMA directly into fd-backed memory/);
    assert.match(out, /ok {4}BAR1 on the destination equals the last guest write/);
    assert.match(out, /ok {4}interrupt programmed on the source delivered by the destination/);
    assert.match(out, /ok {4}destination server exited 0/);
    assert.match(out, /^2 check\(s\) failed \(1 skipped\)/m);
    assert.equal(existsSync(`${sock}.migrated`), false);
  } finally {
    await dev.ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('client: a migration that fails is reported, the destination is stopped, and the run ends with exit 1', { timeout: 90000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vfu-quirks-'));
  const sock = join(dir, 'dev.sock');
  const dev = createLvuQuirksServer();
  // The source cannot produce its final state.
  const mig = dev.ctx.description.migration!;
  const read = mig.read.bind(mig);
  let stopCopy = false;
  const transition = mig.transition.bind(mig);
  mig.transition = (to, from) => {
    stopCopy = to === 'STOP_COPY';
    return transition(to, from);
  };
  mig.read = (max) => {
    if (stopCopy) throw new ProtocolError(Errno.EIO, 'state lost');
    return read(max);
  };
  await dev.ctx.listen(sock);
  try {
    const { code, out } = await runClient(sock);
    assert.equal(code, 1, out);
    assert.match(out, /FAIL {2}live migration: /);
    assert.match(out, /skip {2}the device on the destination: the migration failed/);
    assert.match(out, /^3 check\(s\) failed \(2 skipped\)/m);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.migrated')), [], 'the destination server was stopped\n' + out);
  } finally {
    await dev.ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
