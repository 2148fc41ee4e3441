import type { MessageHeader } from '../protocol/header.js';

/** One whole vfio-user message as received, with the fds that came with it. */
export interface Message {
  header: MessageHeader;
  /** Bytes after the 16-byte header (msgSize - 16 of them). Owned by the receiver. */
  payload: Uint8Array;
  /**
   * File descriptors that arrived with this message. The receiver owns them:
   * whoever consumes the message must keep or close every one.
   */
  fds: number[];
  /** The kernel truncated the control data: some fds sent with it were lost. */
  fdsTruncated: boolean;
}

/** Limits a peer can push on; every one has a safe default. */
export interface TransportLimits {
  /** Largest msg_size accepted (header included). Default 1 MiB + 4 KiB. */
  maxMessageSize: number;
  /** Most fds one message may carry; more are closed and the message flagged. Default 16. */
  maxFdsPerMessage: number;
  /**
   * A declared msg_size above maxMessageSize but at most this big has its body
   * drained (skipped) so the stream stays in sync and the sender gets an error
   * reply; anything larger drops the connection. Default 64 MiB.
   */
  maxDrainSize: number;
  /** Bytes queued for sending above which send() reports back-pressure. Default 4 MiB. */
  sendHighWaterMark: number;
}

export const DEFAULT_TRANSPORT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  maxMessageSize: 1048576 + 4096,
  maxFdsPerMessage: 16,
  maxDrainSize: 64 * 1048576,
  sendHighWaterMark: 4 * 1048576,
});

/** A framing problem the transport recovered from (the message was skipped). */
export interface FramingError {
  kind: 'oversize';
  header: MessageHeader;
}

export interface TransportHandlers {
  /** A whole message arrived (push mode only). */
  onMessage?: (msg: Message) => void;
  /** A message was skipped without desynchronising the stream. */
  onFramingError?: (err: FramingError) => void;
  /** The send queue went below the high-water mark again. */
  onDrain?: () => void;
  /** The connection is gone (peer EOF, fatal error, or close()). Called once. */
  onClose?: (err?: Error) => void;
}

/**
 * A vfio-user byte stream with fds: the same interface over a UNIX socket and
 * over an in-memory pair. Push mode delivers messages through onMessage;
 * pull mode (readMessage) lets an embedder poll without callbacks.
 */
export interface Transport {
  readonly closed: boolean;
  setHandlers(h: TransportHandlers): void;
  /**
   * Queues a whole message. fds go out with its first byte. Returns false when
   * the queue is above the high-water mark. With ownFds the transport closes
   * the fds once the kernel has them (or the message is dropped); otherwise
   * the caller must keep them open until sent. (keep sending if you must; onDrain
   * tells when it is below again). Throws TransportClosedError once closed.
   */
  send(data: Uint8Array, fds?: readonly number[], ownFds?: boolean): boolean;
  /** Stop delivering messages (they stay queued in the kernel or inbox). */
  pause(): void;
  resume(): void;
  /** Switch to pull mode now (messages only through readMessage()). */
  enablePullMode(): void;
  /**
   * Pull mode: returns the next whole message if one is available without
   * blocking, else null. Never invokes onMessage.
   */
  readMessage(): Message | null;
  /**
   * Flush what is queued (bounded by timeoutMs), shutdown both directions,
   * drain and discard unread input (closing its fds), then close. A peer such
   * as QEMU aborts if we close with its bytes unread.
   */
  close(opts?: { timeoutMs?: number }): Promise<void>;
  /** Closes fds this side received and does not want (errors swallowed). */
  releaseFds(fds: readonly number[]): void;
  /** Let the process exit while this transport is open (socket transports only). */
  unref(): void;
  ref(): void;
  /** Limits in force. */
  readonly limits: Readonly<TransportLimits>;
}
