// Config space and BAR sizing the way a guest's PCI core does it: write
// all-ones to a BAR, read back the size mask, restore.
import { cfgRead32, cfgWrite32, okRead, okWrite, regionWrite, answer } from '../ops.js';
import { isError } from '../raw-client.js';
import { expect, fail, pass, skip, type CheckCase } from '../types.js';

const SPEC = 'spec: VFIO_USER_REGION_READ (config region); PCI Local Bus 6.2.5 (BAR sizing)';

export const configCases: CheckCase[] = [
  {
    id: 'config/header',
    group: 'config',
    spec: SPEC,
    title: 'config space: a vendor ID, header type 0, a capability list that stays inside and ends',
    async run(ctx) {
      const cfg = ctx.profile.config;
      const dv = new DataView(cfg.buffer, cfg.byteOffset);
      const vendor = dv.getUint16(0, true);
      expect(vendor !== 0xffff && vendor !== 0, `vendor ID 0x${vendor.toString(16)}`);
      expect((cfg[0x0e]! & 0x7f) === 0, `header type 0x${cfg[0x0e]!.toString(16)}`);
      const ids: string[] = [];
      if (dv.getUint16(6, true) & 0x10) {
        let at = cfg[0x34]! & 0xfc;
        const seen = new Set<number>();
        while (at !== 0) {
          expect(at >= 0x40 && at + 2 <= 256, `capability pointer 0x${at.toString(16)} outside 0x40..0xff`);
          expect(!seen.has(at), `loop in the capability list at 0x${at.toString(16)}`);
          seen.add(at);
          ids.push(`0x${cfg[at]!.toString(16)}@0x${at.toString(16)}`);
          at = cfg[at + 1]! & 0xfc;
        }
      }
      const did = dv.getUint16(2, true);
      return pass(`${vendor.toString(16).padStart(4, '0')}:${did.toString(16).padStart(4, '0')}${ids.length ? `, caps ${ids.join(' ')}` : ''}`);
    },
  },
  {
    id: 'config/bar-types',
    group: 'config',
    spec: `${SPEC}; QEMU takes BAR types from these bits`,
    title: 'BAR type bits: I/O bit on I/O BARs, 64-bit BARs leave their upper half with an empty region',
    async run(ctx) {
      if (ctx.profile.bars.length === 0) return skip('no BARs');
      for (const b of ctx.profile.bars) {
        if (b.is64) {
          expect(b.index < 5, `BAR${b.index} is 64-bit but has no upper half`);
          expect((ctx.profile.regions[b.index + 1]?.size ?? 0n) === 0n, `BAR${b.index} is 64-bit but region ${b.index + 1} has a size`);
        }
        if (b.io) expect(b.size <= 256n, `I/O BAR${b.index} of 0x${b.size.toString(16)} bytes (I/O BARs are at most 256 bytes)`);
      }
      return pass(ctx.profile.bars.map((b) => `BAR${b.index} ${b.io ? 'io' : b.is64 ? 'mem64' : 'mem32'}${b.prefetch ? ' pref' : ''} 0x${b.size.toString(16)}`).join(', '));
    },
  },
  {
    id: 'config/bar-sizing',
    group: 'config',
    spec: SPEC,
    title: 'writing all-ones to each BAR reads back the size its region reports (64-bit across both dwords), and restoring works',
    async run(ctx) {
      if (ctx.profile.bars.length === 0) return skip('no BARs');
      const c = await ctx.connect();
      const seen: string[] = [];
      for (const b of ctx.profile.bars) {
        const off = 0x10 + 4 * b.index;
        const lo0 = await cfgRead32(c, off);
        const hi0 = b.is64 ? await cfgRead32(c, off + 4) : 0;
        await cfgWrite32(c, off, 0xffffffff);
        if (b.is64) await cfgWrite32(c, off + 4, 0xffffffff);
        const lo = await cfgRead32(c, off);
        const hi = b.is64 ? await cfgRead32(c, off + 4) : 0xffffffff;
        await cfgWrite32(c, off, lo0);
        if (b.is64) await cfgWrite32(c, off + 4, hi0);
        const flagBits = b.io ? 0x3 : 0xf;
        expect((lo & flagBits) === (lo0 & flagBits), `BAR${b.index}: type bits changed from 0x${(lo0 & flagBits).toString(16)} to 0x${(lo & flagBits).toString(16)}`);
        let mask = (BigInt(hi >>> 0) << 32n) | BigInt((lo & ~flagBits) >>> 0);
        if (b.io) mask &= 0xffffn; // I/O decoders may keep the upper 16 bits 0
        const width = b.is64 ? 64n : b.io ? 16n : 32n;
        const size = ((~mask & ((1n << width) - 1n)) + 1n) & ((1n << width) - 1n);
        expect(size === b.size, `BAR${b.index}: sizing reads 0x${lo.toString(16)}${b.is64 ? `/0x${hi.toString(16)}` : ''} = 0x${size.toString(16)} bytes, the region has 0x${b.size.toString(16)}`);
        const back = await cfgRead32(c, off);
        expect(back === lo0, `BAR${b.index}: restoring 0x${lo0.toString(16)} reads back 0x${back.toString(16)}`);
        seen.push(`BAR${b.index} 0x${size.toString(16)}`);
      }
      return pass(seen.join(', '));
    },
  },
  {
    id: 'config/unused-bar',
    group: 'config',
    spec: SPEC,
    title: 'an unimplemented BAR sizes to 0 (reads back 0 after all-ones, type bits aside)',
    async run(ctx) {
      const used = new Set(ctx.profile.bars.flatMap((b) => (b.is64 ? [b.index, b.index + 1] : [b.index])));
      const free = [0, 1, 2, 3, 4, 5].find((i) => !used.has(i));
      if (free === undefined) return skip('every BAR is implemented');
      const c = await ctx.connect();
      const off = 0x10 + 4 * free;
      const v0 = await cfgRead32(c, off);
      await cfgWrite32(c, off, 0xffffffff);
      const v = await cfgRead32(c, off);
      await cfgWrite32(c, off, v0);
      expect((v & ~0xf) === 0, `BAR${free} reads 0x${v.toString(16)} after all-ones`);
      return pass(`BAR${free}`);
    },
  },
  {
    id: 'config/rom-sizing',
    group: 'config',
    spec: SPEC,
    title: 'the expansion ROM BAR sizes to its region (or to 0 without a ROM)',
    async run(ctx) {
      const rom = ctx.profile.regions[6];
      const c = await ctx.connect();
      const v0 = await cfgRead32(c, 0x30);
      await cfgWrite32(c, 0x30, 0xfffff800);
      const v = await cfgRead32(c, 0x30);
      await cfgWrite32(c, 0x30, v0);
      const size = (~(v & 0xfffff800) >>> 0) + 1;
      if (!rom || rom.size === 0n) {
        expect((v & 0xfffff800) === 0, `no ROM region but the ROM BAR reads 0x${v.toString(16)} after sizing`);
        return pass('no ROM');
      }
      expect(BigInt(size >>> 0) === rom.size, `ROM BAR sizes to 0x${size.toString(16)}, the region has 0x${rom.size.toString(16)}`);
      return pass(`ROM 0x${rom.size.toString(16)}`);
    },
  },
  {
    id: 'config/read-only-ids',
    group: 'config',
    spec: `${SPEC}; libvfio-user refuses the write, vfio-pci ignores it`,
    title: 'a write to the vendor ID is refused or ignored; the ID does not change',
    async run(ctx) {
      const c = await ctx.connect();
      const before = await okRead(c, 7, 0n, 2);
      const m = await regionWrite(c, 7, 0n, new Uint8Array([before[0]! ^ 0xff, before[1]! ^ 0xff]));
      const after = await okRead(c, 7, 0n, 2);
      if (after[0] !== before[0] || after[1] !== before[1]) {
        await okWrite(c, 7, 0n, before).catch(() => undefined);
        return fail('the vendor ID changed');
      }
      return pass(`saw: ${isError(m) ? answer(m) : 'ignored'}`);
    },
  },
  {
    id: 'config/whole-space',
    group: 'config',
    spec: SPEC,
    title: 'the whole config space reads in one access (QEMU does this at realize)',
    async run(ctx) {
      const c = await ctx.connect();
      const size = Number(ctx.profile.regions[7]?.size ?? 256n);
      const a = await okRead(c, 7, 0n, size);
      expect(a.length === size, `read ${a.length} bytes`);
      return pass(`${size} bytes`);
    },
  },
];
