// BAR0 of the timer sample: an 8-byte register holding a time t (seconds
// since the Epoch, u64 LE). Writing it arms a one-shot timer for t; reading
// returns now - t. Only whole 8-byte accesses at offset 0 are allowed.
import { Errno } from '../../src/protocol/errno.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import type { Logger } from '../../src/util/logger.js';

const nowSeconds = (): bigint => BigInt(Math.floor(Date.now() / 1000));
/** The longest delay setTimeout honours (2^31-1 ms). */
const MAX_TIMEOUT_MS = 0x7fffffff;

/** The BAR0 register and the one-shot timer it programs. */
export class Bar0Timer {
  /** The programmed time (0: none). */
  value = 0n;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    /** Runs when the timer fires. */
    private readonly onFire: () => void,
  ) {}

  /** A guest read: now - t, as an s64. */
  read(off: number, n: number): Uint8Array {
    if (off !== 0 || n !== 8) throw new ProtocolError(Errno.EINVAL, 'BAR0 takes 8-byte accesses at 0');
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigInt64(0, nowSeconds() - this.value, true);
    return out;
  }

  /** A guest write of t; the timer is armed for it when `arm` (the device runs). */
  write(off: number, data: Uint8Array, arm: boolean): void {
    if (off !== 0 || data.length !== 8) throw new ProtocolError(Errno.EINVAL, 'BAR0 takes 8-byte accesses at 0');
    this.value = new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0, true);
    this.log.info(`BAR0 <- ${this.value}`);
    if (arm) this.arm();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** (Re)arms the timer for the programmed time, if any. */
  arm(): void {
    this.cancel();
    if (this.value === 0n) return;
    const due = this.value;
    this.log.info(`timer armed for ${due} (in ${Math.max(0, Number(due - nowSeconds()))} s)`);
    // Node clamps a delay over 2^31-1 ms (24.8 days) to 1 ms: a far-off time
    // waits in steps of at most that, looking at the clock after each.
    const wait = (): void => {
      const leftMs = Math.max(0, Number(due - nowSeconds()) * 1000);
      if (leftMs > MAX_TIMEOUT_MS) {
        this.timer = setTimeout(wait, MAX_TIMEOUT_MS);
        return;
      }
      this.timer = setTimeout(() => {
        this.timer = null;
        this.onFire();
      }, leftMs);
    };
    wait();
  }
}
