// Migration v2: every pair of states the device supports, data only in the
// states that carry it, the saved stream accepted back, dirty logging.
// Skipped as a whole when GET MIGRATION is refused.
import { DeviceFeature, DeviceFeatureFlags, DeviceState, MigrationFlags } from '../../../src/protocol/constants.js';
import { decodeDmaLoggingReport, encodeDmaLoggingControl, encodeDmaLoggingReportRequest } from '../../../src/protocol/device-feature.js';
import { answer, dmaMapMemfd, errReply, feature, featureData, getState, migRead, migWrite, okReply, readStream, setState } from '../ops.js';
import { isError, type RawClient } from '../raw-client.js';
import { expect, fail, pass, skip, type CaseContext, type CheckCase, type CaseOutcome } from '../types.js';

const SPEC = 'spec: VFIO_USER_DEVICE_FEATURE (VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE); Linux vfio.h migration v2 arcs';
const NAMES: Record<number, string> = { 0: 'ERROR', 1: 'STOP', 2: 'RUNNING', 3: 'STOP_COPY', 4: 'RESUMING', 5: 'RUNNING_P2P', 6: 'PRE_COPY', 7: 'PRE_COPY_P2P', 8: '8' };
const CHUNK = 65536;

/** A migration session: knows the current state and a valid saved stream to resume from. */
class Session {
  state = DeviceState.RUNNING as number;
  constructor(
    readonly c: RawClient,
    readonly stream: Uint8Array,
  ) {}

  async set(to: number): Promise<void> {
    if (this.state === DeviceState.RESUMING && to !== DeviceState.RESUMING) await this.feed();
    if (this.state === DeviceState.STOP_COPY && to === DeviceState.PRE_COPY) await this.set(DeviceState.STOP);
    okReply(await setState(this.c, to), `${NAMES[this.state]} -> ${NAMES[to]}`);
    this.state = to;
    if (to === DeviceState.RESUMING) this.fed = false;
  }

  /** The stream was written since RESUMING was entered. */
  fed = true;
  /** Writes the saved stream so that leaving RESUMING has a whole state to load. */
  async feed(): Promise<void> {
    if (this.fed) return;
    for (let at = 0; at < this.stream.length; at += CHUNK) okReply(await migWrite(this.c, this.stream.subarray(at, at + CHUNK)), 'MIG_DATA_WRITE');
    this.fed = true;
  }
}

/** Saves the device (RUNNING -> STOP_COPY -> STOP -> RUNNING) and returns the stream. */
async function save(c: RawClient): Promise<Uint8Array> {
  okReply(await setState(c, DeviceState.STOP_COPY), 'RUNNING -> STOP_COPY');
  const { data } = await readStream(c, CHUNK);
  okReply(await setState(c, DeviceState.STOP), 'STOP_COPY -> STOP');
  okReply(await setState(c, DeviceState.RUNNING), 'STOP -> RUNNING');
  return data;
}

function migCase(id: string, title: string, body: (ctx: CaseContext, c: RawClient) => Promise<CaseOutcome>, spec = SPEC): CheckCase {
  return {
    id: `migration/${id}`,
    group: 'migration',
    spec,
    title,
    async run(ctx) {
      if (ctx.profile.migration === null) return skip(`the device does not migrate (GET MIGRATION: ${ctx.profile.migrationAnswer})`);
      const c = await ctx.connect();
      try {
        return await body(ctx, c);
      } finally {
        // Leave the device running for the next case whatever happened.
        if (!c.closed) {
          const s = await getState(c).catch(() => -1);
          if (s !== DeviceState.RUNNING) await setState(c, DeviceState.RUNNING).catch(() => undefined);
        }
      }
    },
  };
}

export const migrationCases: CheckCase[] = [
  migCase('flags', 'GET MIGRATION: STOP_COPY is supported; initial state RUNNING', async (ctx, c) => {
    const f = ctx.profile.migration!;
    expect(f & MigrationFlags.STOP_COPY, `migration flags 0x${f.toString(16)} without STOP_COPY`);
    const s = await getState(c);
    expect(s === DeviceState.RUNNING, `state ${NAMES[s] ?? s} at the start`);
    return pass(`flags 0x${f.toString(16)}${f & MigrationFlags.PRE_COPY ? ' (PRE_COPY)' : ''}`);
  }),
  migCase('every-pair', 'every pair of supported states: the SET succeeds and GET says so (STOP_COPY -> PRE_COPY refused)', async (ctx, c) => {
    const stream = await save(c);
    const states: number[] = [DeviceState.STOP, DeviceState.RUNNING, DeviceState.STOP_COPY, DeviceState.RESUMING];
    if (ctx.profile.migration! & MigrationFlags.PRE_COPY) states.push(DeviceState.PRE_COPY);
    const s = new Session(c, stream);
    let pairs = 0;
    for (const a of states) {
      for (const b of states) {
        if (a === b) continue;
        await s.set(a);
        if (a === DeviceState.RESUMING) await s.feed();
        if (a === DeviceState.STOP_COPY && b === DeviceState.PRE_COPY) {
          errReply(await setState(c, b), 'STOP_COPY -> PRE_COPY');
          const now = await getState(c);
          expect(now === DeviceState.STOP_COPY, `after the refused STOP_COPY -> PRE_COPY the state is ${NAMES[now]}`);
          continue;
        }
        await s.set(b);
        const now = await getState(c);
        expect(now === b, `${NAMES[a]} -> ${NAMES[b]}: GET says ${NAMES[now] ?? now}`);
        pairs++;
      }
    }
    await s.set(DeviceState.RUNNING);
    return pass(`${pairs} transitions over ${states.map((x) => NAMES[x]).join(', ')}; stream ${stream.length} bytes`);
  }),
  migCase('invalid-targets', 'SET to ERROR, RUNNING_P2P, PRE_COPY_P2P and 8 is refused; the state stays RUNNING', async (_ctx, c) => {
    for (const to of [DeviceState.ERROR, DeviceState.RUNNING_P2P, DeviceState.PRE_COPY_P2P, 8]) {
      const m = await setState(c, to);
      expect(isError(m), `SET ${NAMES[to]} accepted`);
      const now = await getState(c);
      expect(now === DeviceState.RUNNING, `after SET ${NAMES[to]} the state is ${NAMES[now] ?? now}`);
    }
    return pass();
  }),
  migCase('data-states', 'MIG_DATA_READ only in STOP_COPY/PRE_COPY, MIG_DATA_WRITE only in RESUMING', async (_ctx, c) => {
    const stream = await save(c);
    const bad: string[] = [];
    const tryRead = async (where: string): Promise<void> => {
      const m = await migRead(c, 64);
      if (!isError(m)) bad.push(`MIG_DATA_READ in ${where}`);
    };
    const tryWrite = async (where: string): Promise<void> => {
      const m = await migWrite(c, new Uint8Array(8));
      if (!isError(m)) bad.push(`MIG_DATA_WRITE in ${where}`);
    };
    await tryRead('RUNNING');
    await tryWrite('RUNNING');
    okReply(await setState(c, DeviceState.STOP), '-> STOP');
    await tryRead('STOP');
    await tryWrite('STOP');
    okReply(await setState(c, DeviceState.STOP_COPY), '-> STOP_COPY');
    await tryWrite('STOP_COPY');
    okReply(await migRead(c, 64), 'MIG_DATA_READ in STOP_COPY');
    okReply(await setState(c, DeviceState.STOP), '-> STOP');
    okReply(await setState(c, DeviceState.RESUMING), '-> RESUMING');
    await tryRead('RESUMING');
    for (let at = 0; at < stream.length; at += CHUNK) okReply(await migWrite(c, stream.subarray(at, at + CHUNK)), 'MIG_DATA_WRITE');
    okReply(await setState(c, DeviceState.RUNNING), 'RESUMING -> RUNNING');
    if (bad.length) return fail(`accepted: ${bad.join(', ')}`);
    return pass();
  }),
  migCase('round-trip', 'the stream saved in STOP_COPY ends with a short or empty read and is accepted back through RESUMING', async (_ctx, c) => {
    okReply(await setState(c, DeviceState.STOP_COPY), '-> STOP_COPY');
    const { data, ending } = await readStream(c, CHUNK);
    const again = await migRead(c, CHUNK);
    okReply(await setState(c, DeviceState.STOP), '-> STOP');
    okReply(await setState(c, DeviceState.RESUMING), '-> RESUMING');
    for (let at = 0; at < data.length; at += CHUNK) okReply(await migWrite(c, data.subarray(at, at + CHUNK)), 'MIG_DATA_WRITE');
    okReply(await setState(c, DeviceState.STOP), 'RESUMING -> STOP (loads the state)');
    okReply(await setState(c, DeviceState.RUNNING), 'STOP -> RUNNING');
    return pass(`${data.length} bytes, ended by ${ending}; a read after the end: ${isError(again) ? answer(again) : `${again.payload.length - 8} bytes`}`);
  }),
  migCase('disconnect-mid-stream', 'a client that leaves in STOP_COPY mid-stream: the next client is served and can return to RUNNING', async (ctx, c) => {
    okReply(await setState(c, DeviceState.STOP_COPY), '-> STOP_COPY');
    okReply(await migRead(c, 16), 'MIG_DATA_READ');
    c.abort();
    const d = await ctx.connect();
    const s = await getState(d);
    okReply(await setState(d, DeviceState.RUNNING), `${NAMES[s]} -> RUNNING`);
    return pass(`the next client found ${NAMES[s] ?? s}`);
  }, 'spec: Socket Disconnection Behavior; spec: VFIO_USER_MIG_DATA_READ'),
  {
    id: 'migration/dirty-logging',
    group: 'migration',
    spec: 'spec: VFIO_USER_DEVICE_FEATURE (DMA_LOGGING_START/STOP/REPORT)',
    title: 'DMA logging: START, REPORT with a bitmap of the right size, STOP; REPORT outside logging and page_size 0 refused',
    async run(ctx) {
      const c = await ctx.connect();
      const pages = 100n;
      okReply(await dmaMapMemfd(c, { address: 0x4000_0000n, size: pages * 4096n }), 'DMA_MAP');
      const report = () =>
        feature(c, DeviceFeature.DMA_LOGGING_REPORT, DeviceFeatureFlags.GET, encodeDmaLoggingReportRequest({ iova: 0x4000_0000n, length: pages * 4096n, pageSize: 4096n }), 8 + 24 + 16);
      const start = await feature(c, DeviceFeature.DMA_LOGGING_START, DeviceFeatureFlags.SET, encodeDmaLoggingControl({ pageSize: 4096n, ranges: [] }));
      if (isError(start)) return skip(`DMA_LOGGING_START refused with ${answer(start)}: the device does not log`);
      const r = okReply(await report(), 'DMA_LOGGING_REPORT');
      const data = featureData(r);
      expect(data.length === 24 + 16, `REPORT data of ${data.length} bytes for 100 pages (24 + 16 expected)`);
      const rep = decodeDmaLoggingReport(data);
      expect(rep.iova === 0x4000_0000n && rep.length === pages * 4096n, 'REPORT does not echo its range');
      okReply(await feature(c, DeviceFeature.DMA_LOGGING_STOP, DeviceFeatureFlags.SET, encodeDmaLoggingControl({ pageSize: 4096n, ranges: [] })), 'DMA_LOGGING_STOP');
      errReply(await report(), 'REPORT after STOP');
      errReply(await feature(c, DeviceFeature.DMA_LOGGING_START, DeviceFeatureFlags.SET, encodeDmaLoggingControl({ pageSize: 0n, ranges: [] })), 'START with page_size 0');
      return pass();
    },
  },
];
