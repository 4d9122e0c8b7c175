import { ProtocolError } from '../errors.js';
import { encodeControl, encodeData, MAX_HEADER, wsData, wsFrame, wsFrameThenHeader, wsHeader, type DataFrame, type Frame } from './frame.js';

/**
 * The byte stream a Sender writes WebSocket frames to: the connection's TCP socket, or any Node.js
 * Writable (the tests use one in memory).
 */
export interface Wire {
  write(chunk: Uint8Array, cb?: (err?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
  /** Bytes accepted by write but not yet handed to the kernel. */
  readonly writableLength: number;
  readonly destroyed: boolean;
}

/** Sizes that decide which of the three paths a message takes. */
export interface SenderOptions {
  /** A client's frames are masked (RFC 6455), with an all-zero key. */
  masked: boolean;
  /** Payloads up to this size are copied into their frame; larger ones go as raw chunks. */
  inlineBytes: number;
  chunkBytes: number;
  /** Unacknowledged bytes above which sends wait for the socket (backpressure). */
  highWaterBytes: number;
}

/**
 * The sending half of a connection. A message takes one of three paths:
 * - small (up to inlineBytes): copied into its frame in reused memory and written at once; the
 *   caller's buffer is free on return;
 * - large with nothing queued and room under the high-water mark: its announcement and every chunk
 *   go to the socket at once, corked into one writev, straight from the caller's memory;
 * - anything else: queued behind what is ahead of it, chunk by chunk as the socket drains.
 * Messages leave in the order they were sent, and a chunked one leaves whole.
 */
export class Sender {
  /** Bytes written but not yet reported done by the wire. */
  private pendingBytes = 0;
  private drainWaiters: (() => void)[] = [];
  private sendQueue: Promise<void> = Promise.resolve();
  private queued = 0;
  /** Memory for small frames, free while no write holds it (see sendData). */
  private frameOut: Buffer | null = null;
  private failed = false;

  constructor(
    /** The wire, looked up at each send (a client's socket exists only once it is open). */
    private readonly wire: () => Wire,
    /** Whether frames may be written now (the WebSocket is open and not closing). */
    private readonly open: () => boolean,
    private readonly opts: SenderOptions,
  ) {}

  /** Nothing is being written or waits to be: the peer is not waiting on this side's bytes. */
  get idle(): boolean {
    return this.pendingBytes === 0 && this.queued === 0;
  }

  /** The largest frame a small message (or any frame but a raw chunk) makes. */
  get inlineFrameBytes(): number {
    return this.opts.inlineBytes + MAX_HEADER + 14;
  }

  /** The connection died: wake every send waiting for the socket (each then fails). */
  fail(): void {
    this.failed = true;
    for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Resolves once everything queued has been written (or failed). */
  flushed(): Promise<void> {
    return this.sendQueue;
  }

  private writable(cb?: (err?: Error) => void): boolean {
    if (this.failed || !this.open()) {
      cb?.(new ProtocolError('connection is closed'));
      return false;
    }
    return true;
  }

  private afterWrite(n: number, cb?: (err?: Error) => void) {
    return (err?: Error | null) => {
      this.pendingBytes -= n;
      if (this.pendingBytes < this.opts.highWaterBytes) for (const w of this.drainWaiters.splice(0)) w();
      cb?.(err ?? undefined);
    };
  }

  private waitDrain(): Promise<void> {
    if (this.pendingBytes < this.opts.highWaterBytes || this.failed || !this.open()) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  /** Sends one encoded frame (from encodeData/encodeControl) as one WebSocket message, in one write. */
  sendRaw(encoded: Buffer, cb?: (err?: Error) => void): void {
    if (!this.writable(cb)) return;
    const whole = wsFrame(encoded, this.opts.masked);
    this.pendingBytes += whole.byteLength;
    this.wire().write(whole, this.afterWrite(whole.byteLength, cb));
  }

  /** A WebSocket control frame (ping, pong, close) with a payload under 126 bytes, written at once. */
  sendWsControl(opcode: number, payload: Buffer): void {
    const wire = this.wire();
    if (wire.destroyed) return;
    const masked = this.opts.masked;
    const h = Buffer.alloc(2 + (masked ? 4 : 0));
    h[0] = 0x80 | opcode;
    h[1] = (masked ? 0x80 : 0) | payload.length;
    wire.write(Buffer.concat([h, payload]));
  }

  /** Sends a control frame after any queued data. */
  sendControl(f: Exclude<Frame, DataFrame>): void {
    if (this.queued === 0) this.sendRaw(encodeControl(f));
    else this.sendQueue = this.sendQueue.then(() => this.sendRaw(encodeControl(f)));
  }

  /**
   * Sends a typed-array message; resolves when the buffer may be reused (null: it may be already).
   * A slow receiver makes this wait (backpressure) instead of growing memory.
   */
  sendData(comm: string, tag: number, dtype: number, bytes: Uint8Array, meta: unknown): Promise<void> | null {
    const n = bytes.byteLength;
    if (this.queued === 0 && n <= this.opts.inlineBytes && this.pendingBytes < this.opts.highWaterBytes && this.wire().writableLength < this.opts.highWaterBytes) {
      return this.sendInline(comm, tag, dtype, bytes, meta);
    }
    if (this.queued === 0 && n > this.opts.inlineBytes && this.pendingBytes + n <= this.opts.highWaterBytes && this.writable()) {
      return this.sendCorked(comm, tag, dtype, bytes, meta);
    }
    this.queued++;
    const p = this.sendQueue.then(async () => {
      await this.waitDrain();
      return this.sendQueued(comm, tag, dtype, bytes, meta);
    });
    this.sendQueue = p.then(
      () => void this.queued--,
      () => void this.queued--,
    );
    return p;
  }

  /**
   * The payload is copied into the frame, so the caller's buffer is free at once; a failed write
   * kills the connection, which fails what depends on the peer. Nothing waits on the write: the
   * wire's own count of unwritten bytes bounds this path.
   */
  private sendInline(comm: string, tag: number, dtype: number, bytes: Uint8Array, meta: unknown): Promise<void> | null {
    if (!this.writable()) return Promise.reject(new ProtocolError('connection is closed'));
    // The frame is built in memory reused from the last such send when that write went to the
    // kernel at once (as it nearly always does): fresh memory for every message costs a page
    // fault per 4 KiB written, more than the rest of the send at tens of KiB.
    const reuse = this.frameOut ?? Buffer.allocUnsafeSlow(this.inlineFrameBytes);
    this.frameOut = null;
    const wire = this.wire();
    wire.write(wsData(this.opts.masked, comm, tag, dtype, bytes.byteLength, 0, meta, bytes, reuse));
    if (wire.writableLength === 0) this.frameOut = reuse; // else the wire still holds it
    return null;
  }

  /**
   * The whole message goes to the wire now, not after the caller's next await (a pipeline stage
   * computes right after sending). Corked: the announcement and every chunk leave in one writev (a
   * separate small write costs the receiver a wake-up of its own). The announcement and the first
   * chunk's header are one buffer; only the last write reports.
   */
  private sendCorked(comm: string, tag: number, dtype: number, bytes: Uint8Array, meta: unknown): Promise<void> {
    const { chunkBytes, masked } = this.opts;
    const n = bytes.byteLength;
    const head = wsFrameThenHeader(encodeData(comm, tag, dtype, n, Math.ceil(n / chunkBytes), meta), masked, Math.min(chunkBytes, n));
    const total = head.byteLength + n;
    const wire = this.wire();
    this.pendingBytes += total;
    return new Promise<void>((resolve, reject) => {
      const done = this.afterWrite(total, (e) => (e ? reject(e) : resolve()));
      wire.cork();
      wire.write(head);
      for (let off = 0; off < n; off += chunkBytes) {
        const end = Math.min(off + chunkBytes, n);
        if (off > 0) wire.write(wsHeader(end - off, masked));
        if (end < n) wire.write(bytes.subarray(off, end));
        else wire.write(bytes.subarray(off, end), done);
      }
      wire.uncork();
    });
  }

  /** Sends raw payload bytes as one WebSocket message, straight from the caller's memory. */
  private sendChunk(bytes: Uint8Array, cb?: (err?: Error) => void): void {
    if (!this.writable(cb)) return;
    const wire = this.wire();
    this.pendingBytes += bytes.byteLength;
    wire.cork();
    wire.write(wsHeader(bytes.byteLength, this.opts.masked));
    wire.write(bytes, this.afterWrite(bytes.byteLength, cb));
    wire.uncork();
  }

  /** A message whose turn came in the queue: inline, or its chunks as the wire drains. */
  private async sendQueued(comm: string, tag: number, dtype: number, bytes: Uint8Array, meta: unknown): Promise<void> {
    const { chunkBytes, inlineBytes } = this.opts;
    if (!this.writable()) throw new ProtocolError('connection is closed');
    if (bytes.byteLength <= inlineBytes) {
      return new Promise((resolve, reject) => this.sendRaw(encodeData(comm, tag, dtype, bytes.byteLength, 0, meta, bytes), (e) => (e ? reject(e) : resolve())));
    }
    this.sendRaw(encodeData(comm, tag, dtype, bytes.byteLength, Math.ceil(bytes.byteLength / chunkBytes), meta));
    // Chunks leave back to back; only the last one reports its write.
    for (let off = 0; off < bytes.byteLength; off += chunkBytes) {
      if (this.pendingBytes >= this.opts.highWaterBytes) await this.waitDrain();
      if (!this.writable()) throw new ProtocolError('connection is closed');
      const end = Math.min(off + chunkBytes, bytes.byteLength);
      const part = bytes.subarray(off, end);
      if (end < bytes.byteLength) this.sendChunk(part);
      else await new Promise<void>((resolve, reject) => this.sendChunk(part, (e) => (e ? reject(e) : resolve())));
    }
  }
}
