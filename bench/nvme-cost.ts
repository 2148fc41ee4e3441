// Host-side cost per NVMe command of the NVMe sample: the server runs in a
// child process (as it would next to QEMU), this process plays the host
// driver over the socket (queues and buffers in a memfd the server maps, one
// MSI-X eventfd per queue). Reports wall time per command at queue depth 1
// and 32 and the server process's CPU time per command (user + system, from
// process.cpuUsage() around each phase).
//
//   node --import tsx bench/nvme-cost.ts [--commands N] [--json] [--doorbells mmio|posted|shadow]
//
// --doorbells: mmio (default, the historical figure) writes every doorbell
// as a REGION_WRITE that waits for its reply; posted sends them NO_REPLY as
// QEMU does; shadow adds Doorbell Buffer Config as Linux's nvme driver uses
// it (posted MMIO only where the controller's EventIdx asks for one).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { VfioUserClient } from '../src/client/client.js';
import { createNvmeDevice } from '../samples/nvme/index.js';
import { NvmeHost } from '../samples/nvme/host.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : def;
};

if (argv[0] === '--serve') {
  // Child: serve the device; on each line "sample" from stdin print CPU usage and command count.
  const [, sock, backing] = argv;
  const dev = createNvmeDevice({ backing: backing!, size: 64 << 20 });
  await dev.ctx.listen(sock!);
  console.log('ready');
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (l) => {
    if (l === 'sample') {
      const u = process.cpuUsage();
      console.log(JSON.stringify({ cpuUs: u.user + u.system, io: dev.stats.ioCommands, irqs: dev.stats.interrupts, doorbells: dev.stats.doorbells }));
    }
  });
  rl.on('close', () => void dev.close().then(() => process.exit(0)));
} else {
  const N = Number(opt('--commands', '20000'));
  const doorbells = opt('--doorbells', 'mmio');
  if (!['mmio', 'posted', 'shadow'].includes(doorbells)) throw new Error(`--doorbells ${doorbells}: mmio, posted or shadow`);
  const dir = mkdtempSync(join(tmpdir(), 'nvme-bench-'));
  const sock = join(dir, 'nvme.sock');
  const child = spawn(process.execPath, [...(process.env.NVME_COST_NODE_ARGS ?? '').split(' ').filter(Boolean), '--import', 'tsx', fileURLToPath(import.meta.url), '--serve', sock, join(dir, 'disk.img')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const queue: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  lines.on('line', (l) => (waiters.length ? waiters.shift()!(l) : queue.push(l)));
  const nextLine = (): Promise<string> => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r)));
  const sample = async (): Promise<{ cpuUs: number; io: number; doorbells: number }> => {
    child.stdin!.write('sample\n');
    return JSON.parse(await nextLine()) as { cpuUs: number; io: number; doorbells: number };
  };
  try {
    if ((await nextLine()) !== 'ready') throw new Error('server did not start');
    const client = await VfioUserClient.connect(sock);
    const host = await NvmeHost.attach(client, { memSize: 32 << 20 });
    await host.enable();
    await host.admin({ opcode: 0x09, cdw10: 0x07, cdw11: 0 });
    if (doorbells === 'shadow') {
      const c = await host.enableShadowDoorbells();
      if (c.code !== 0) throw new Error(`Doorbell Buffer Config refused: 0x${c.code.toString(16)}`);
    }
    host.postedDoorbells = doorbells !== 'mmio';
    await host.createIoQueue(1, 256, 1);
    const results: Record<string, { usPerCmd: number; serverCpuUsPerCmd: number; iops: number; doorbellsPerCmd: number }> = {};
    const phase = async (name: string, depth: number, op: 'read' | 'write'): Promise<void> => {
      host.resetHeap();
      const bufs = Array.from({ length: depth }, () => host.alloc(4096));
      const data = new Uint8Array(4096).fill(0x5a);
      // Warm-up.
      await Promise.all(bufs.map((b, i) => (op === 'read' ? host.read(1, i * 8, 4096, b) : host.write(1, i * 8, data, b))));
      const s0 = await sample();
      const t0 = process.hrtime.bigint();
      let issued = 0;
      await Promise.all(
        bufs.map(async (b) => {
          while (issued < N) {
            const lba = (issued++ * 8) % (60 << 11);
            const c = op === 'read' ? (await host.read(1, lba, 4096, b)).cqe : await host.write(1, lba, data, b);
            if (c.code !== 0) throw new Error(`${op} failed: 0x${c.code.toString(16)}`);
          }
        }),
      );
      const ns = Number(process.hrtime.bigint() - t0);
      const s1 = await sample();
      const cmds = s1.io - s0.io;
      results[name] = { usPerCmd: ns / 1000 / cmds, serverCpuUsPerCmd: (s1.cpuUs - s0.cpuUs) / cmds, iops: Math.round(cmds / (ns / 1e9)), doorbellsPerCmd: (s1.doorbells - s0.doorbells) / cmds };
    };
    await phase('read 4k QD1', 1, 'read');
    await phase('read 4k QD32', 32, 'read');
    await phase('write 4k QD32', 32, 'write');
    host.stop();
    await client.close();
    if (argv.includes('--json')) console.log(JSON.stringify(results));
    else {
      console.log(`NVMe sample, ${N} commands per phase, 4 KiB, one I/O queue, server in a child process, ${doorbells} doorbells`);
      for (const [k, v] of Object.entries(results)) {
        console.log(`  ${k.padEnd(14)} ${v.usPerCmd.toFixed(1).padStart(7)} us/command wall  ${v.serverCpuUsPerCmd.toFixed(1).padStart(6)} us server CPU/command  ${String(v.iops).padStart(7)} IOPS  ${v.doorbellsPerCmd.toFixed(2)} MMIO doorbells/command`);
      }
    }
  } finally {
    child.stdin!.end();
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}
