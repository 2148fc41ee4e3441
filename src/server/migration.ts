import { DeviceFeature, MigrationFlags } from '../protocol/constants.js';
import {
  checkFeatureArgsz,
  checkFeatureOps,
  decodeDmaLoggingControl,
  decodeDmaLoggingReportRequest,
  decodeMigDeviceState,
  encodeDeviceFeatureGetReply,
  encodeDmaLoggingReport,
  encodeMigDeviceState,
  encodeMigrationData,
  validateDmaLoggingReport,
  validateDmaLoggingStart,
  FEATURE_SUPPORTED_OPS,
  type DecodedDeviceFeature,
} from '../protocol/device-feature.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError, VfioUserError } from '../protocol/errors.js';
import { encodeMigDataReadReplyParts } from '../protocol/mig-data.js';
import type { PayloadParts } from '../protocol/wire.js';
import type { MigrationCallbacks, MigrationStateName } from './device.js';
import type { DmaTable } from './dma-table.js';
import { concatBytes } from '../util/bytes.js';
import { MigState, migStateName, transitionPath } from './migration-fsm.js';

/**
 * Thrown by a migration callback to say the device cannot continue: the
 * state becomes ERROR, which only a device reset leaves. Any other error
 * leaves the device in the last state it reached.
 */
export class MigrationFatalError extends VfioUserError {
  constructor(message: string) {
    super('ERR_VFIO_USER_MIGRATION_FATAL', message);
  }
}

export interface MigrationDeps {
  table: DmaTable;
  maxBitmapSize: number;
  /** Runs a non-probe SET with the device quiesced (its quiesce and resume hooks). */
  quiesced<T>(fn: () => Promise<T> | T): Promise<T>;
  /** Told after every state change (the context gates DMA and IRQs on it). */
  onState?(state: number): void;
}

const isStopped = (s: number): boolean => s === MigState.STOP || s === MigState.STOP_COPY || s === MigState.RESUMING || s === MigState.ERROR;

/**
 * DEVICE_FEATURE (migration v2 and DMA dirty logging) and MIG_DATA_READ /
 * MIG_DATA_WRITE. The state machine's rules are the table in migration-fsm.
 */
export class MigrationController {
  private stateValue: number = MigState.RUNNING;
  /** The save stream returned its end; later reads return 0 bytes. */
  private streamEnded = false;

  constructor(
    private readonly cb: MigrationCallbacks | undefined,
    private readonly deps: MigrationDeps,
  ) {}

  /** True when the device has migration callbacks. */
  get supported(): boolean {
    return this.cb !== undefined;
  }

  /** True when the device advertises PRE_COPY. */
  get preCopy(): boolean {
    return this.cb !== undefined && this.cb.preCopy !== false;
  }

  /** The current state as a DeviceState number. */
  get state(): number {
    return this.stateValue;
  }

  /** The current state by name. */
  get stateName(): MigrationStateName {
    return migStateName(this.stateValue) as MigrationStateName;
  }

  /** STOP, STOP_COPY, RESUMING and ERROR: the device must not DMA or interrupt. */
  get stopped(): boolean {
    return isStopped(this.stateValue);
  }

  private setState(s: number): void {
    this.stateValue = s;
    this.deps.onState?.(s);
  }

  /** Handles one DEVICE_FEATURE request; returns the reply payload. */
  async feature(req: DecodedDeviceFeature): Promise<Uint8Array> {
    const f = req.feature;
    const migrationFeature = f === DeviceFeature.MIGRATION || f === DeviceFeature.MIG_DEVICE_STATE;
    const loggingFeature = f === DeviceFeature.DMA_LOGGING_START || f === DeviceFeature.DMA_LOGGING_STOP || f === DeviceFeature.DMA_LOGGING_REPORT;
    // ENOTTY, the kernel's answer for an unsupported feature (libvfio-user says EINVAL).
    if (!(loggingFeature || (migrationFeature && this.cb))) throw new ProtocolError(Errno.ENOTTY, `device feature ${f} not supported`);
    checkFeatureOps(req.flags, FEATURE_SUPPORTED_OPS[f]!);
    if (req.probe) return encodeEcho(req);
    switch (f) {
      case DeviceFeature.MIGRATION: {
        checkFeatureArgsz(req.argsz, 16);
        let flags = BigInt(MigrationFlags.STOP_COPY);
        if (this.preCopy) flags |= BigInt(MigrationFlags.PRE_COPY);
        return encodeDeviceFeatureGetReply(req.flags, encodeMigrationData(flags));
      }
      case DeviceFeature.MIG_DEVICE_STATE:
        if (req.get) {
          checkFeatureArgsz(req.argsz, 16);
          return encodeDeviceFeatureGetReply(req.flags, encodeMigDeviceState({ deviceState: this.stateValue, dataFd: 0 }));
        }
        await this.deps.quiesced(() => this.transition(decodeMigDeviceState(req.data).deviceState));
        // Byte-identical echo: libvfio-user's client compares it with memcmp.
        return encodeEcho(req);
      case DeviceFeature.DMA_LOGGING_START: {
        const c = decodeDmaLoggingControl(req.data);
        validateDmaLoggingStart(c);
        const ps = Number(c.pageSize);
        if (!Number.isSafeInteger(ps)) throw new ProtocolError(Errno.EINVAL, 'logging page size too large');
        const cur = this.deps.table.loggingPageSize;
        if (cur !== null && cur !== ps) throw new ProtocolError(Errno.EINVAL, `dirty logging already on with page size ${cur}`);
        // Every fd-backed region is logged, whatever the ranges: reporting is
        // per requested range, so logging more is invisible to the client.
        if (cur === null) await this.deps.quiesced(() => this.deps.table.startLogging(ps));
        return encodeEcho(req);
      }
      case DeviceFeature.DMA_LOGGING_STOP:
        await this.deps.quiesced(() => this.deps.table.stopLogging());
        return encodeEcho(req);
      case DeviceFeature.DMA_LOGGING_REPORT:
        return this.report(req);
    }
    throw new ProtocolError(Errno.ENOTTY, `device feature ${f} not supported`);
  }

  private report(req: DecodedDeviceFeature): Uint8Array {
    const r = decodeDmaLoggingReportRequest(req.data);
    const bitmapBytes = validateDmaLoggingReport(r);
    if (bitmapBytes > this.deps.maxBitmapSize) throw new ProtocolError(Errno.E2BIG, `dirty bitmap of ${bitmapBytes} bytes exceeds ${this.deps.maxBitmapSize}`);
    checkFeatureArgsz(req.argsz, 8 + 24 + bitmapBytes);
    const table = this.deps.table;
    if (table.loggingPageSize === null) throw new ProtocolError(Errno.EINVAL, 'dirty logging is not on');
    const region = table.at(r.iova);
    if (!region) throw new ProtocolError(Errno.ENOENT, `IOVA 0x${r.iova.toString(16)} is not mapped`);
    if (r.iova + r.length > region.iova + region.size) throw new ProtocolError(Errno.EINVAL, 'report range spans more than one DMA region');
    let bitmap: Uint8Array;
    if (!region.dirty) {
      // Mapped without an fd: the client did those writes and tracks them itself.
      bitmap = new Uint8Array(bitmapBytes);
    } else {
      // Views the device still holds writable may have been written since the last report.
      for (const h of region.heldWritable) region.markDirty(h.offset, h.length);
      bitmap = region.dirty.takeRange(Number(r.iova - region.iova), Number(r.length), Number(r.pageSize));
    }
    return encodeDeviceFeatureGetReply(req.flags, encodeDmaLoggingReport({ ...r, bitmap }));
  }

  /** Runs every hop of a requested transition, calling the device per hop. */
  async transition(to: number): Promise<void> {
    if (!this.cb) throw new ProtocolError(Errno.ENOTTY, 'device has no migration support');
    if (this.stateValue === MigState.ERROR) throw new ProtocolError(Errno.EINVAL, 'device is in ERROR; reset it');
    const path = transitionPath(this.stateValue, to, this.preCopy);
    for (const hop of path) {
      const from = this.stateValue;
      try {
        await this.cb.transition(migStateName(hop) as MigrationStateName, migStateName(from) as MigrationStateName);
      } catch (e) {
        if (e instanceof MigrationFatalError) this.setState(MigState.ERROR);
        const errno = (e as { errno?: number }).errno;
        throw new ProtocolError(typeof errno === 'number' && errno > 0 ? errno : Errno.EIO, `migration ${migStateName(from)} -> ${migStateName(hop)} failed: ${(e as Error).message}`);
      }
      if (hop === MigState.PRE_COPY || hop === MigState.STOP_COPY) this.streamEnded = false;
      this.setState(hop);
    }
  }

  /** MIG_DATA_READ: fills up to `size` bytes (a short read means the end, per the spec). */
  async readData(size: number): Promise<PayloadParts> {
    if (this.stateValue !== MigState.PRE_COPY && this.stateValue !== MigState.STOP_COPY) {
      throw new ProtocolError(Errno.EINVAL, `MIG_DATA_READ in state ${migStateName(this.stateValue)}`);
    }
    const parts: Uint8Array[] = [];
    let have = 0;
    while (have < size && !this.streamEnded) {
      const chunk = await this.cb!.read(size - have);
      if (chunk.length === 0) {
        // In PRE_COPY "nothing more for now"; in STOP_COPY the end of the state.
        if (this.stateValue === MigState.STOP_COPY) this.streamEnded = true;
        break;
      }
      if (chunk.length > size - have) throw new ProtocolError(Errno.EIO, `device returned ${chunk.length} bytes for a ${size - have}-byte read`);
      parts.push(chunk);
      have += chunk.length;
    }
    const data = parts.length === 1 ? parts[0]! : concatBytes(parts);
    // Zero padding up to the requested size: libvfio-user's client reads
    // exactly 8 + size bytes; a spec client uses the size field.
    return encodeMigDataReadReplyParts(data, size);
  }

  /** MIG_DATA_WRITE: hands the bytes to the device. */
  async writeData(data: Uint8Array): Promise<void> {
    if (this.stateValue !== MigState.RESUMING) throw new ProtocolError(Errno.EINVAL, `MIG_DATA_WRITE in state ${migStateName(this.stateValue)}`);
    await this.cb!.write(data);
  }

  /** A device reset returns migration to RUNNING (the only way out of ERROR). */
  async resetToRunning(): Promise<void> {
    const from = this.stateValue;
    if (from === MigState.RUNNING) return;
    this.setState(MigState.RUNNING);
    this.streamEnded = false;
    try {
      await this.cb?.transition('RUNNING', migStateName(from) as MigrationStateName);
    } catch {
      // The reset itself succeeded; the device reports its own trouble.
    }
  }

  /**
   * The client vanished. A pre-copy session is abandoned (back to RUNNING);
   * other states stay as they are, and a reset brings the device back.
   */
  async clientGone(): Promise<void> {
    if (this.stateValue === MigState.PRE_COPY) {
      try {
        await this.transition(MigState.RUNNING);
      } catch {
        // left in PRE_COPY's last good state; DEVICE_RESET recovers
      }
    }
  }
}

function encodeEcho(req: DecodedDeviceFeature): Uint8Array {
  const out = new Uint8Array(8 + req.data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, req.argsz, true);
  dv.setUint32(4, req.flags, true);
  out.set(req.data, 8);
  return out;
}
