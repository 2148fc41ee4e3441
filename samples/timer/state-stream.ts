// The timer sample's migration stream, as libvfio-user's sample lays it out:
// BAR1 then the 8-byte BAR0, no header. PRE_COPY sends BAR1 once; STOP_COPY
// sends BAR1 + BAR0.
import { Errno } from '../../src/protocol/errno.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import type { Logger } from '../../src/util/logger.js';

/** Size of the shared-memory BAR1. */
export const BAR1_SIZE = 0x4000;
/** Size of the timer register BAR0. */
export const BAR0_SIZE = 8;

/** Where the stream reads and restores the device's state. */
export interface TimerState {
  bar1(): Uint8Array;
  getBar0(): bigint;
  setBar0(v: bigint): void;
}

/** Produces the outgoing stream and collects and applies the incoming one. */
export class TimerStateStream {
  /** Stream position while saving. */
  private pos = 0;
  /**
   * Restore: only the last BAR1 + BAR0 bytes of the stream matter (see
   * restore()), so only those are kept, however much a client sends.
   */
  private readonly tail = new Uint8Array(BAR1_SIZE + BAR0_SIZE);
  private received = 0;

  constructor(
    private readonly state: TimerState,
    private readonly log: Logger,
  ) {}

  /** Starts a new outgoing stream (entering PRE_COPY or STOP_COPY). */
  rewind(): void {
    this.pos = 0;
  }

  /** The next at most `max` bytes: BAR1 in PRE_COPY, BAR1 + BAR0 in STOP_COPY. */
  read(max: number, stopCopy: boolean): Uint8Array {
    const total = stopCopy ? BAR1_SIZE + BAR0_SIZE : BAR1_SIZE;
    const n = Math.min(max, total - this.pos);
    if (n <= 0) return new Uint8Array(0);
    const out = new Uint8Array(n);
    const whole = new Uint8Array(BAR1_SIZE + BAR0_SIZE);
    whole.set(this.state.bar1());
    new DataView(whole.buffer).setBigUint64(BAR1_SIZE, this.state.getBar0(), true);
    out.set(whole.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }

  /** Forgets what was received (entering RESUMING). */
  beginRestore(): void {
    this.received = 0;
  }

  write(data: Uint8Array): void {
    const keep = this.tail.length;
    if (data.length >= keep) this.tail.set(data.subarray(data.length - keep));
    else {
      this.tail.copyWithin(0, data.length);
      this.tail.set(data, keep - data.length);
    }
    this.received += data.length;
  }

  /**
   * Applies what the source sent. Our own client forwards the PRE_COPY data
   * too, so the stream is k copies of BAR1 followed by BAR1 + BAR0: the last
   * BAR1 + 8 bytes are the device's final state.
   */
  restore(): void {
    const total = this.received;
    if (total < BAR1_SIZE + BAR0_SIZE || (total - BAR0_SIZE) % BAR1_SIZE !== 0) {
      throw new ProtocolError(Errno.EINVAL, `migration stream of ${total} bytes is not BAR1 (+ BAR1)* + BAR0`);
    }
    this.state.bar1().set(this.tail.subarray(0, BAR1_SIZE));
    const bar0 = new DataView(this.tail.buffer).getBigUint64(BAR1_SIZE, true);
    this.state.setBar0(bar0);
    this.received = 0;
    this.log.info(`restored BAR1 and BAR0 = ${bar0} from ${total} bytes`);
  }
}
