import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type WebSocket from 'ws';
import { ProtocolError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Socket } from 'node:net';
import { decodeFrame, encodeControl, encodeData, Kind, wsFrame, wsHeader, type DataFrame, type Frame } from './frame.js';

/** What a connection hands its frames to. */
export interface Sink {
  /** A whole message arrived (payload may view the receive buffer: copy what you keep). */
  onData(peer: number, f: DataFrame, payload: Uint8Array): void;
  /** A chunked message starts: return the bytes to fill (f.bytes long). */
  onChunkedBegin(peer: number, f: DataFrame): Uint8Array;
  /** The chunked message is complete. */
  onChunkedEnd(peer: number, f: DataFrame, filled: Uint8Array): void;
  /** A peer reports that it lost a rank. */
  onLostNotice(from: number, rank: number, reason: string): void;
}

/** Tuning shared by every connection of a process. */
export interface ConnectionOptions {
  rank: number;
  token: string;
  maxMessageBytes: number;
  /** Payloads up to this size are copied into their frame; larger ones go as raw chunks. */
  inlineBytes: number;
  chunkBytes: number;
  highWaterBytes: number;
  heartbeatMs: number;
  peerTimeoutMs: number;
  log: Logger;
}

/** HMAC proof that a side knows the job token. */
export function proof(token: string, role: 'c' | 's', nonce: string, rank: number): string {
  return createHmac('sha256', token).update(`${role}|${nonce}|${rank}`).digest('hex');
}

function sameProof(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * One authenticated WebSocket between two ranks. Every frame before authentication other than the
 * handshake is refused; after it, data frames go to the sink in the order they were sent.
 */
export class Connection {
  peer = -1;
  authenticated = false;
  closed = false;
  private lastSeen = Date.now();
  // Set on every message and folded into lastSeen by the heartbeat timer: no clock read per message.
  private heard = false;
  private readonly nonce = randomBytes(16).toString('hex');
  private chunked: { f: DataFrame; dest: Uint8Array; filled: number; left: number } | null = null;
  private pendingBytes = 0;
  private drainWaiters: (() => void)[] = [];
  private sendQueue: Promise<void> = Promise.resolve();
  private queued = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Called once when the connection dies or stops answering. */
  onDead: (reason: string) => void = () => {};
  /** Called for control frames after authentication (rendezvous). */
  onControl: (f: Frame) => void = () => {};
  /** Called once authenticated. */
  onAuthenticated: () => void = () => {};

  constructor(
    readonly ws: WebSocket,
    readonly side: 'server' | 'client',
    private readonly opts: ConnectionOptions,
    private readonly sink: Sink,
    /** For a client: the rank it dialled. */
    readonly expectedPeer = -1,
  ) {
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => this.receive(data, isBinary));
    ws.on('pong', () => (this.lastSeen = Date.now()));
    ws.on('close', (code: number, reason: Buffer) => this.die(`connection closed (code ${code}${reason.length ? `, ${reason.toString()}` : ''})`));
    ws.on('error', (e: Error) => this.die(`connection error: ${e.message}`));
    if (side === 'server') this.sendRaw(encodeControl({ kind: Kind.Challenge, rank: opts.rank, nonce: this.nonce }));
  }

  private startHeartbeat(): void {
    const { heartbeatMs, peerTimeoutMs } = this.opts;
    this.timer = setInterval(() => {
      if (this.heard) {
        this.heard = false;
        this.lastSeen = Date.now();
      }
      if (Date.now() - this.lastSeen > peerTimeoutMs) {
        this.die(`no message or heartbeat for ${Date.now() - this.lastSeen} ms (limit ${peerTimeoutMs} ms)`);
        this.ws.terminate();
        return;
      }
      try {
        this.ws.ping();
      } catch {
        /* closing */
      }
    }, heartbeatMs);
    this.timer.unref();
  }

  private die(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.drainWaiters.splice(0)) w();
    this.onDead(reason);
  }

  private reject(reason: string): void {
    this.opts.log.warn(`rejected a frame from ${this.peer >= 0 ? `rank ${this.peer}` : 'an unauthenticated connection'}: ${reason}`);
    if (!this.authenticated) this.ws.close(1008, reason.slice(0, 120));
  }

  private receive(data: Buffer, isBinary: boolean): void {
    this.heard = true;
    if (this.chunked) {
      const c = this.chunked;
      if (data.byteLength > c.left) {
        // The peer broke the chunk protocol: drop the message, keep the connection's framing sane.
        this.chunked = null;
        this.reject(`chunk of ${data.byteLength} bytes overruns a message with ${c.left} bytes left`);
        return;
      }
      c.dest.set(data, c.filled);
      c.filled += data.byteLength;
      c.left -= data.byteLength;
      if (c.left === 0) {
        this.chunked = null;
        this.sink.onChunkedEnd(this.peer, c.f, c.dest);
      }
      return;
    }
    if (!isBinary) return this.reject('text frame');
    let f: Frame;
    try {
      f = decodeFrame(data, this.opts.maxMessageBytes);
    } catch (e) {
      return this.reject((e as Error).message);
    }
    if (!this.authenticated) return this.handshake(f);
    if (f.kind === Kind.Data) {
      if (f.chunks === 0) this.sink.onData(this.peer, f, f.payload);
      else this.chunked = { f, dest: this.sink.onChunkedBegin(this.peer, f), filled: 0, left: f.bytes };
    } else if (f.kind === Kind.Lost) this.sink.onLostNotice(this.peer, f.rank, f.reason);
    else if (f.kind === Kind.Bye) {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      this.ws.close(1000, 'bye');
    } else this.onControl(f);
  }

  private handshake(f: Frame): void {
    const { token, rank } = this.opts;
    if (this.side === 'client' && f.kind === Kind.Challenge) {
      if (this.expectedPeer >= 0 && f.rank !== this.expectedPeer) return this.reject(`dialled rank ${this.expectedPeer} but rank ${f.rank} answered`);
      this.peer = f.rank;
      this.sendRaw(encodeControl({ kind: Kind.Auth, rank, proof: proof(token, 'c', f.nonce, rank), nonce: this.nonce }));
    } else if (this.side === 'client' && f.kind === Kind.AuthOk && this.peer >= 0) {
      if (f.rank !== this.peer || !sameProof(f.proof, proof(token, 's', this.nonce, f.rank))) return this.reject('server failed to prove the job token');
      this.accept();
    } else if (this.side === 'server' && f.kind === Kind.Auth) {
      if (!sameProof(f.proof, proof(token, 'c', this.nonce, f.rank))) return this.reject(`connection claiming rank ${f.rank} failed to prove the job token`);
      this.peer = f.rank;
      this.sendRaw(encodeControl({ kind: Kind.AuthOk, rank, proof: proof(token, 's', f.nonce, rank) }));
      this.accept();
    } else {
      this.reject(`frame of kind ${f.kind} before authentication`);
    }
  }

  private accept(): void {
    this.authenticated = true;
    this.startHeartbeat();
    this.onAuthenticated();
  }

  /** The WebSocket's TCP socket, written to directly (one write per frame). */
  private get socket(): Socket {
    return (this.ws as unknown as { _socket: Socket })._socket;
  }

  private afterWrite(n: number, cb?: (err?: Error) => void) {
    return (err?: Error | null) => {
      this.pendingBytes -= n;
      if (this.pendingBytes < this.opts.highWaterBytes) for (const w of this.drainWaiters.splice(0)) w();
      cb?.(err ?? undefined);
    };
  }

  private writable(cb?: (err?: Error) => void): boolean {
    if (this.closed || this.ws.readyState !== 1) {
      cb?.(new ProtocolError('connection is closed'));
      return false;
    }
    return true;
  }

  /** Sends one encoded frame (from encodeData/encodeControl) as one WebSocket message, in one write. */
  sendRaw(encoded: Buffer, cb?: (err?: Error) => void): void {
    if (!this.writable(cb)) return;
    const whole = wsFrame(encoded, this.side === 'client');
    this.pendingBytes += whole.byteLength;
    this.socket.write(whole, this.afterWrite(whole.byteLength, cb));
  }

  /** Sends raw payload bytes as one WebSocket message, straight from the caller's memory. */
  private sendChunk(bytes: Uint8Array, cb?: (err?: Error) => void): void {
    if (!this.writable(cb)) return;
    const sock = this.socket;
    this.pendingBytes += bytes.byteLength;
    sock.cork();
    sock.write(wsHeader(bytes.byteLength, this.side === 'client'));
    sock.write(bytes, this.afterWrite(bytes.byteLength, cb));
    sock.uncork();
  }

  private waitDrain(): Promise<void> {
    if (this.pendingBytes < this.opts.highWaterBytes || this.closed) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  /** Sends a control frame after any queued data. */
  sendControl(f: Exclude<Frame, DataFrame>): void {
    if (this.queued === 0) this.sendRaw(encodeControl(f));
    else this.sendQueue = this.sendQueue.then(() => this.sendRaw(encodeControl(f)));
  }

  /**
   * Sends a typed-array message; resolves when the buffer may be reused (null: it may be already). Large payloads go as raw chunks, never re-encoded; a slow receiver makes
   * this wait (backpressure) instead of growing memory.
   */
  sendData(comm: string, tag: number, dtype: number, bytes: Uint8Array, meta: unknown): Promise<void> | null {
    const { chunkBytes, inlineBytes } = this.opts;
    const run = (): Promise<void> => {
      if (this.closed) return Promise.reject(new ProtocolError('connection is closed'));
      if (bytes.byteLength <= inlineBytes) {
        return new Promise((resolve, reject) =>
          this.sendRaw(encodeData(comm, tag, dtype, bytes.byteLength, 0, meta, bytes), (e) => (e ? reject(e) : resolve())),
        );
      }
      const chunks = Math.ceil(bytes.byteLength / chunkBytes);
      return (async () => {
        this.sendRaw(encodeData(comm, tag, dtype, bytes.byteLength, chunks, meta));
        // Chunks leave back to back; only the last one reports its write.
        for (let off = 0; off < bytes.byteLength; off += chunkBytes) {
          if (this.pendingBytes >= this.opts.highWaterBytes) await this.waitDrain();
          if (this.closed) throw new ProtocolError('connection is closed');
          const end = Math.min(off + chunkBytes, bytes.byteLength);
          const part = bytes.subarray(off, end);
          if (end < bytes.byteLength) this.sendChunk(part);
          else await new Promise<void>((resolve, reject) => this.sendChunk(part, (e) => (e ? reject(e) : resolve())));
        }
      })();
    };
    // Messages leave in order, and a chunked one leaves whole: later sends wait behind it.
    if (this.queued === 0 && bytes.byteLength <= inlineBytes && this.pendingBytes < this.opts.highWaterBytes) {
      // Fast path: the payload is copied into the frame, so the caller's buffer is free at once;
      // a failed write kills the connection, which fails what depends on the peer.
      if (this.closed || this.ws.readyState !== 1) return Promise.reject(new ProtocolError('connection is closed'));
      this.sendRaw(encodeData(comm, tag, dtype, bytes.byteLength, 0, meta, bytes));
      return null;
    }
    if (this.queued === 0 && this.pendingBytes + bytes.byteLength <= this.opts.highWaterBytes && !this.closed && this.ws.readyState === 1) {
      // Nothing ahead of it and room under the high-water mark: the whole message goes to the socket
      // now, not after the caller's next await (a pipeline stage computes right after sending).
      const chunks = Math.ceil(bytes.byteLength / chunkBytes);
      this.sendRaw(encodeData(comm, tag, dtype, bytes.byteLength, chunks, meta));
      return new Promise<void>((resolve, reject) => {
        for (let off = 0; off < bytes.byteLength; off += chunkBytes) {
          const end = Math.min(off + chunkBytes, bytes.byteLength);
          if (end < bytes.byteLength) this.sendChunk(bytes.subarray(off, end));
          else this.sendChunk(bytes.subarray(off, end), (e) => (e ? reject(e) : resolve()));
        }
      });
    }
    this.queued++;
    const p = this.sendQueue.then(async () => {
      await this.waitDrain();
      return run();
    });
    this.sendQueue = p.then(
      () => void this.queued--,
      () => void this.queued--,
    );
    return p;
  }

  /** Stops reading from the socket (receiver-side backpressure). */
  pause(): void {
    this.ws.pause();
  }
  /** Resumes reading. */
  resume(): void {
    this.ws.resume();
  }

  /** Says goodbye and closes. */
  close(): void {
    if (this.closed) return;
    try {
      if (this.authenticated) this.sendControl({ kind: Kind.Bye });
    } catch {
      /* already closing */
    }
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const ws = this.ws;
    this.sendQueue.finally(() => ws.close(1000, 'bye'));
  }
}
