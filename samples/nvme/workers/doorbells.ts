// Doorbell hand-off to the I/O worker threads. Whatever thread receives the
// guest's doorbell writes (the event loop's, or a dedicated device thread)
// stores the value in a SharedArrayBuffer slot and wakes the worker that owns
// the queue (Atomics.notify); the worker waits with Atomics.waitAsync, so its
// own event loop keeps running file I/O completions meanwhile. No message is
// posted per doorbell, and the receiving thread needs no event loop of its own.

/** Atomics.waitAsync (V8 has it; TypeScript's ES2022 library does not declare it). */
type WaitAsync = (a: Int32Array, index: number, value: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** The shared memory of one hand-off: create it once, pass `buffers` to every thread that rings or waits. */
export interface DoorbellBuffers {
  /** Int32 per doorbell: index 2*qid is SQ qid's tail, 2*qid+1 CQ qid's head. */
  doorbells: SharedArrayBuffer;
  /** Int32 per queue id: the worker that serves it, -1 for none (admin and unassigned queues). */
  owners: SharedArrayBuffer;
  /** Int32 per worker: bumped on every doorbell for one of its queues. */
  wake: SharedArrayBuffer;
}

export class DoorbellHandoff {
  readonly values: Int32Array;
  readonly owners: Int32Array;
  readonly wake: Int32Array;

  constructor(readonly buffers: DoorbellBuffers) {
    this.values = new Int32Array(buffers.doorbells);
    this.owners = new Int32Array(buffers.owners);
    this.wake = new Int32Array(buffers.wake);
  }

  /** Fresh buffers for queue ids 0..maxQid and `workers` workers. */
  static create(maxQid: number, workers: number): DoorbellHandoff {
    const owners = new SharedArrayBuffer((maxQid + 1) * 4);
    new Int32Array(owners).fill(-1);
    return new DoorbellHandoff({
      doorbells: new SharedArrayBuffer(2 * (maxQid + 1) * 4),
      owners,
      wake: new SharedArrayBuffer(workers * 4),
    });
  }

  /** The worker serving queue `qid`, or -1. */
  ownerOf(qid: number): number {
    return qid >= 0 && qid < this.owners.length ? Atomics.load(this.owners, qid) : -1;
  }

  /**
   * Assigns queue `qid` to `worker` (-1: nobody) and resets its two doorbell
   * slots, so a new queue never sees its predecessor's values.
   */
  assign(qid: number, worker: number): void {
    Atomics.store(this.values, 2 * qid, 0);
    Atomics.store(this.values, 2 * qid + 1, 0);
    Atomics.store(this.owners, qid, worker);
  }

  /** Doorbell `index` (2*qid for SQ tails, 2*qid+1 for CQ heads) was written `value`. Returns false when no worker owns the queue. */
  ring(index: number, value: number): boolean {
    const w = this.ownerOf(index >> 1);
    if (w < 0) return false;
    Atomics.store(this.values, index, value);
    this.poke(w);
    return true;
  }

  /** Wakes worker `w` (it then rereads every doorbell it owns). */
  poke(w: number): void {
    Atomics.add(this.wake, w, 1);
    Atomics.notify(this.wake, w, 1);
  }

  /** Worker side: resolves once worker `w`'s wake counter differs from `seen`. */
  async waitForRing(w: number, seen: number): Promise<void> {
    const r = waitAsync(this.wake, w, seen);
    if (r.async) await r.value;
  }
}
