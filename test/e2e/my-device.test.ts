// The guide's device (docs/examples/my-device.ts) in a QEMU 11.1 guest, as
// docs/writing-a-device.md ends: the guide's guest commands run verbatim
// (uio_pci_generic takes the device through driver_override, the guest reads
// and writes BAR0 (callbacks) and reads BAR2 (shared memory QEMU maps into
// the guest) with devmem, and an INTx the device asserts reaches /dev/uio0),
// and the guest prints what the guide says it does.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { codeBlocks } from '../helpers/markdown.js';
import { createMyDevice, DEVICE_ID_VALUE } from '../../docs/examples/my-device.js';
import { bootGuest, ensureHarness, findSection, HARMLESS_QEMU_LINES, parseGuestReport, qemuProblems } from './qemu.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const GUIDE_SECTION = '10. In a QEMU guest';

/**
 * The guide's guest commands and the output it says they print. The guest
 * has no modules.dep, so `modprobe` becomes the harness's `loadmod`; the
 * rest runs verbatim.
 */
function guideGuest(): { script: string; expected: string[] } {
  const blocks = codeBlocks(readFileSync(join(ROOT, 'docs/writing-a-device.md'), 'utf8')).filter((b) => b.heading === GUIDE_SECTION);
  const sh = blocks.find((b) => b.lang === 'sh');
  const out = blocks.find((b) => b.lang === '' && b.line > (sh?.line ?? Infinity));
  assert.ok(sh && out, `docs/writing-a-device.md: "${GUIDE_SECTION}" has the guest commands and their output`);
  const script = sh.text.replace(/^modprobe /gm, 'loadmod ');
  return { script: `section guide sh -c '${script.replace(/'/g, `'\\''`)}'\n`, expected: out.text.split('\n').filter((l) => l.trim() !== '') };
}

test('QEMU guest: uio_pci_generic binds the guide device through driver_override; the guest reads its BARs and takes its INTx', { timeout: 5 * 60_000 }, async () => {
  await ensureHarness();
  const dir = mkdtempSync(join(tmpdir(), 'vfu-e2e-guide-'));
  const sock = join(dir, 'my-device.sock');
  const dev = createMyDevice();
  dev.ctx.region(2).memory!.set(new TextEncoder().encode('hello from BAR2'));
  await dev.ctx.listen(sock);
  try {
    const guide = guideGuest();
    const res = await bootGuest({ socket: sock, guestScript: guide.script, timeoutMs: 170_000 });
    const report = parseGuestReport(res.console);
    const why = `\n--- console ---\n${res.console.slice(-6000)}\n--- qemu stderr ---\n${res.qemuStderr}`;
    assert.equal(res.exitCode, 0, `QEMU exit ${res.exitCode}${why}`);
    assert.ok(report.done, `guest did not finish${why}`);
    assert.deepEqual(qemuProblems(res.qemuStderr, HARMLESS_QEMU_LINES), [], why);

    const pci = report.pci.find((d) => d.vendor === 0x1234 && d.device === 0xbeef);
    assert.ok(pci, `device not enumerated${why}`);
    assert.deepEqual(pci.resources.map((r) => [r.index, Number(r.end - r.start + 1n)]), [[0, 0x1000], [2, 0x1000], [4, 0x1000]]);

    const section = findSection(report, 'guide');
    assert.ok(section, `the guide's commands did not run${why}`);
    assert.equal(section.rc, 0, `the guide's commands failed in the guest${why}`);
    const got = section.lines.map((l) => l.trimEnd());
    // Every line the guide shows, in its order (the guest may print more, e.g. dd's record counts).
    let at = 0;
    for (const want of guide.expected) {
      const i = got.indexOf(want.trimEnd(), at);
      assert.ok(i >= 0, `the guide says the guest prints "${want}"; it printed:\n${got.join('\n')}`);
      at = i + 1;
    }
    // The values behind those lines: BAR0 has no memory, so reading the scratch value back proves
    // the write reached the device's callback; BAR2 is the device's shared memory ('hell').
    assert.ok(guide.expected.includes(`0x${DEVICE_ID_VALUE.toString(16).toUpperCase()}`), 'the guide shows the ID register');
    assert.ok(guide.expected.includes('0x6C6C6568') && guide.expected.includes('events=1'), 'the guide shows BAR2 and the interrupt');
    console.log(`# e2e guide device: boot ${res.wallMs} ms; guest printed: ${got.join(' | ')}`);
  } finally {
    await dev.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
