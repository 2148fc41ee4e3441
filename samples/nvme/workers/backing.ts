// A worker's own descriptor of the namespace's backing file: vectored reads
// and writes straight from and to views of guest memory, synchronously for
// small transfers (a page-cache copy costs less than a thread-pool round
// trip) and in the thread pool above. The controller's thread created and
// sized the file; a worker only opens it.
import { closeSync, fdatasync, openSync } from 'node:fs';
import { newIoStats, readFully, readFullySync, writeFully, writeFullySync, type IoStats } from '../file-io.js';

/** Counters the SMART log would show, for this worker's share. */
export type BackingStats = IoStats;

export class WorkerBacking {
  readonly stats: BackingStats = newIoStats();
  private fd: number;

  constructor(
    path: string,
    /** Namespace size in bytes. */
    readonly size: number,
    readonly readOnly: boolean,
  ) {
    this.fd = openSync(path, readOnly ? 'r' : 'r+');
  }

  readSync(pos: number, bufs: readonly Uint8Array[]): void {
    readFullySync(this.fd, pos, bufs);
  }

  writeSync(pos: number, bufs: readonly Uint8Array[]): void {
    writeFullySync(this.fd, pos, bufs);
  }

  read(pos: number, bufs: readonly Uint8Array[]): Promise<void> {
    return readFully(this.fd, pos, bufs);
  }

  write(pos: number, bufs: readonly Uint8Array[]): Promise<void> {
    return writeFully(this.fd, pos, bufs);
  }

  flush(): Promise<void> {
    return new Promise((resolve, reject) => fdatasync(this.fd, (e) => (e ? reject(e) : resolve())));
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
