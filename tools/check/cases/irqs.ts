// SET_IRQS as vfio-pci has it: eventfd assignment and de-assignment,
// loopback triggers (DATA_NONE / DATA_BOOL) that signal the eventfd whatever
// the masks say, disable-all, and the validation rules.
import { IrqInfoFlags } from '../../../src/protocol/constants.js';
import type { CaseContext } from '../types.js';
import { answer, closeFds, errReply, eventfd, eventfdTake, eventfdWait, IRQ_NAMES, MASK_NONE, okReply, setIrqs, TRIGGER_BOOL, TRIGGER_EVENTFD, TRIGGER_NONE, UNMASK_NONE } from '../ops.js';
import { irqTarget } from '../profile.js';
import { isError } from '../raw-client.js';
import { expect, fail, pass, skip, type CheckCase, type CaseOutcome } from '../types.js';

const SPEC = 'spec: VFIO_USER_DEVICE_SET_IRQS; Linux vfio-pci (VFIO_DEVICE_SET_IRQS)';

/** Runs `body` with an eventfd assigned to vector 0 of the device's first IRQ index with vectors. */
function withVector(id: string, title: string, body: (ctx: CaseContext, c: Awaited<ReturnType<CaseContext['connect']>>, index: number, efd: number) => Promise<CaseOutcome>): CheckCase {
  return {
    id: `irqs/${id}`,
    group: 'irqs',
    spec: SPEC,
    title,
    async run(ctx) {
      const t = irqTarget(ctx.profile);
      if (!t) return skip('no INTx, MSI or MSI-X vectors');
      const c = await ctx.connect();
      const efd = eventfd();
      try {
        okReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index: t.index, start: 0, count: 1 }, [efd]), `assigning an eventfd to ${IRQ_NAMES[t.index]}[0]`);
        // Some devices raise an interrupt of their own on assignment; start from zero.
        await new Promise((r) => setTimeout(r, 20));
        eventfdTake(efd);
        const out = await body(ctx, c, t.index, efd);
        return out.detail ? out : { ...out, detail: `${IRQ_NAMES[t.index]}[0]` };
      } finally {
        closeFds([efd]);
      }
    },
  };
}

export const irqsCases: CheckCase[] = [
  withVector('loopback-none', 'NONE|TRIGGER signals the assigned eventfd', async (ctx, c, index, efd) => {
    okReply(await setIrqs(c, { flags: TRIGGER_NONE, index, start: 0, count: 1 }), 'NONE|TRIGGER');
    const v = await eventfdWait(efd, ctx.timeoutMs);
    expect(v > 0n, 'the eventfd was not signalled');
    return pass();
  }),
  withVector('loopback-bool', 'BOOL|TRIGGER signals for a 1 byte and not for a 0 byte', async (ctx, c, index, efd) => {
    okReply(await setIrqs(c, { flags: TRIGGER_BOOL, index, start: 0, count: 1, data: new Uint8Array([0]) }), 'BOOL|TRIGGER [0]');
    await new Promise((r) => setTimeout(r, 50));
    expect(eventfdTake(efd) === 0n, 'signalled for a 0 byte');
    okReply(await setIrqs(c, { flags: TRIGGER_BOOL, index, start: 0, count: 1, data: new Uint8Array([1]) }), 'BOOL|TRIGGER [1]');
    expect((await eventfdWait(efd, ctx.timeoutMs)) > 0n, 'not signalled for a 1 byte');
    return pass();
  }),
  withVector('loopback-masked', 'a loopback trigger signals the eventfd even while the vector is masked (vfio-pci)', async (ctx, c, index, efd) => {
    const mask = await setIrqs(c, { flags: MASK_NONE, index, start: 0, count: 1 });
    if (isError(mask)) return skip(`MASK refused with ${answer(mask)}`);
    okReply(await setIrqs(c, { flags: TRIGGER_NONE, index, start: 0, count: 1 }), 'NONE|TRIGGER while masked');
    const v = await eventfdWait(efd, ctx.timeoutMs);
    await setIrqs(c, { flags: UNMASK_NONE, index, start: 0, count: 1 });
    expect(v > 0n, 'a loopback trigger of a masked vector did not signal its eventfd (vfio-pci signals it regardless of masks)');
    return pass();
  }),
  withVector('deassign', 'EVENTFD|TRIGGER without fds de-assigns: a loopback no longer signals the old eventfd', async (_ctx, c, index, efd) => {
    okReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index, start: 0, count: 1 }), 'de-assign');
    const m = await setIrqs(c, { flags: TRIGGER_NONE, index, start: 0, count: 1 });
    await new Promise((r) => setTimeout(r, 50));
    expect(eventfdTake(efd) === 0n, 'the de-assigned eventfd was signalled');
    return pass(`loopback without an eventfd: ${answer(m)}`);
  }),
  withVector('replace', 'assigning a new eventfd replaces the old one', async (ctx, c, index, efd) => {
    const efd2 = eventfd();
    try {
      okReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index, start: 0, count: 1 }, [efd2]), 'assigning a second eventfd');
      okReply(await setIrqs(c, { flags: TRIGGER_NONE, index, start: 0, count: 1 }), 'NONE|TRIGGER');
      expect((await eventfdWait(efd2, ctx.timeoutMs)) > 0n, 'the new eventfd was not signalled');
      expect(eventfdTake(efd) === 0n, 'the replaced eventfd was signalled');
      return pass();
    } finally {
      closeFds([efd2]);
    }
  }),
  withVector('disable-all', 'NONE|TRIGGER with count 0 disables every vector of the index', async (_ctx, c, index, efd) => {
    okReply(await setIrqs(c, { flags: TRIGGER_NONE, index, start: 0, count: 0 }), 'disable all');
    await setIrqs(c, { flags: TRIGGER_NONE, index, start: 0, count: 1 });
    await new Promise((r) => setTimeout(r, 50));
    expect(eventfdTake(efd) === 0n, 'an eventfd of a disabled index was signalled');
    return pass();
  }),
  {
    id: 'irqs/disable-all-empty',
    group: 'irqs',
    spec: `${SPEC}; README: QEMU sends it, libvfio-user refuses it`,
    title: 'disable-all (count 0) on every index: accepted where there are vectors; either answer where there are none',
    async run(ctx) {
      const c = await ctx.connect();
      const seen: string[] = [];
      for (const q of ctx.profile.irqs) {
        const m = await setIrqs(c, { flags: TRIGGER_NONE, index: q.index, start: 0, count: 0 });
        if (q.count > 0 && isError(m)) return fail(`disable-all on ${IRQ_NAMES[q.index]} refused with ${answer(m)}`);
        if (q.count === 0) seen.push(`${IRQ_NAMES[q.index]}: ${answer(m)}`);
      }
      return pass(seen.length ? `empty indexes: ${seen.join(', ')}` : undefined);
    },
  },
  {
    id: 'irqs/out-of-range',
    group: 'irqs',
    spec: SPEC,
    title: 'vectors beyond the index count, and an index beyond num_irqs, are refused',
    async run(ctx) {
      const c = await ctx.connect();
      for (const q of ctx.profile.irqs) {
        errReply(await setIrqs(c, { flags: TRIGGER_NONE, index: q.index, start: q.count, count: 1 }), `${IRQ_NAMES[q.index]} vector ${q.count}`);
      }
      errReply(await setIrqs(c, { flags: TRIGGER_NONE, index: ctx.profile.info.numIrqs, start: 0, count: 1 }), `index ${ctx.profile.info.numIrqs}`);
      return pass();
    },
  },
  {
    id: 'irqs/fd-count-mismatch',
    group: 'irqs',
    spec: SPEC,
    title: 'EVENTFD|TRIGGER with fewer fds than count is refused (and the fd is not kept)',
    async run(ctx) {
      const t = ctx.profile.irqs.find((q) => q.count >= 2);
      if (!t) return skip('no IRQ index with 2 vectors');
      const c = await ctx.connect();
      const efd = eventfd();
      try {
        errReply(await setIrqs(c, { flags: TRIGGER_EVENTFD, index: t.index, start: 0, count: 2 }, [efd]), 'count 2 with 1 fd');
      } finally {
        closeFds([efd]);
      }
      return pass(IRQ_NAMES[t.index]);
    },
  },
  {
    id: 'irqs/bad-flags',
    group: 'irqs',
    spec: SPEC,
    title: 'two data types, two actions, no action, and unknown bits are refused',
    async run(ctx) {
      const t = irqTarget(ctx.profile);
      const index = t?.index ?? 0;
      const c = await ctx.connect();
      for (const flags of [0x1 | 0x2 | 0x20, 0x1 | 0x8 | 0x20, 0x1, 0x1 | 0x20 | 0x100]) {
        errReply(await setIrqs(c, { flags, index, start: 0, count: 1 }), `flags 0x${flags.toString(16)}`);
      }
      return pass();
    },
  },
  {
    id: 'irqs/fds-without-eventfd',
    group: 'irqs',
    spec: SPEC,
    title: 'fds with DATA_NONE are refused',
    async run(ctx) {
      const t = irqTarget(ctx.profile);
      if (!t) return skip('no vectors');
      const c = await ctx.connect();
      const efd = eventfd();
      try {
        errReply(await setIrqs(c, { flags: TRIGGER_NONE, index: t.index, start: 0, count: 1 }, [efd]), 'NONE|TRIGGER with an fd');
      } finally {
        closeFds([efd]);
      }
      return pass();
    },
  },
  {
    id: 'irqs/bool-length',
    group: 'irqs',
    spec: SPEC,
    title: 'DATA_BOOL with fewer data bytes than count is refused',
    async run(ctx) {
      const t = irqTarget(ctx.profile);
      if (!t) return skip('no vectors');
      const c = await ctx.connect();
      errReply(await setIrqs(c, { flags: TRIGGER_BOOL, index: t.index, start: 0, count: 1, data: new Uint8Array(0) }), 'BOOL with no data byte');
      return pass();
    },
  },
  {
    id: 'irqs/err-req-actions',
    group: 'irqs',
    spec: SPEC,
    title: 'ERR and REQ take TRIGGER only: MASK is refused',
    async run(ctx) {
      const present = [3, 4].filter((i) => (ctx.profile.irqs[i]?.count ?? 0) > 0);
      if (present.length === 0) return skip('no ERR or REQ vectors');
      const c = await ctx.connect();
      for (const index of present) errReply(await setIrqs(c, { flags: MASK_NONE, index, start: 0, count: 1 }), `MASK on ${IRQ_NAMES[index]}`);
      return pass(present.map((i) => IRQ_NAMES[i]).join(', '));
    },
  },
  {
    id: 'irqs/mask-unmask',
    group: 'irqs',
    spec: `${SPEC}; libvfio-user accepts MASK/UNMASK without reporting MASKABLE`,
    title: 'MASK/UNMASK: accepted when the index is MASKABLE; either answer otherwise',
    async run(ctx) {
      const t = irqTarget(ctx.profile);
      if (!t) return skip('no vectors');
      const maskable = (ctx.profile.irqs[t.index]!.flags & IrqInfoFlags.MASKABLE) !== 0;
      const c = await ctx.connect();
      const m1 = await setIrqs(c, { flags: MASK_NONE, index: t.index, start: 0, count: 1 });
      const m2 = await setIrqs(c, { flags: UNMASK_NONE, index: t.index, start: 0, count: 1 });
      if (maskable && (isError(m1) || isError(m2))) return fail(`${IRQ_NAMES[t.index]} is MASKABLE but MASK: ${answer(m1)}, UNMASK: ${answer(m2)}`);
      return pass(`${IRQ_NAMES[t.index]}${maskable ? ' (MASKABLE)' : ''}: MASK ${answer(m1)}, UNMASK ${answer(m2)}`);
    },
  },
];
