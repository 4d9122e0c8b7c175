import type WebSocket from 'ws';
import { ProtocolError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Socket } from 'node:net';
import { ownReads, socketOf, type ReadTarget } from './reads.js';
import { Handshake } from './handshake.js';
import { WsFrameReader } from './wsreader.js';
import { decodeFrame, encodeControl, encodeData, Kind, MAX_HEADER, wsData, wsFrame, wsFrameThenHeader, wsHeader, type DataFrame, type Frame } from './frame.js';

/** What a connection hands its frames to. */
export interface Sink {
  /** A whole message arrived (payload views a reused read buffer: copy what you keep). */
  onData(peer: number, f: DataFrame, payload: Uint8Array): void;
  /**
   * A chunked message starts: return the bytes to fill (f.bytes long), or, only when `mayHold`, null
   * to leave the message in the socket until a receive from the peer is posted (noteReceive) or the
   * hold runs out (nobody waits for it yet).
   */
  onChunkedBegin(peer: number, f: DataFrame, mayHold: boolean): Uint8Array | null;
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
  /** How long a large message that arrived before its receive may stay unread in the socket (0: never). */
  holdMs: number;
  log: Logger;
}

/**
 * One authenticated WebSocket between two ranks. Every frame before authentication other than the
 * handshake is refused; after it, data frames go to the sink in the order they were sent.
 */
export class Connection implements ReadTarget {
  peer = -1;
  authenticated = false;
  closed = false;
  private lastSeen = Date.now();
  // Set on every message and folded into lastSeen by the heartbeat timer: no clock read per message.
  private heard = false;
  private readonly hs: Handshake;
  private chunked: { f: DataFrame; dest: Uint8Array; filled: number; left: number } | null = null;
  private pendingBytes = 0;
  private drainWaiters: (() => void)[] = [];
  private sendQueue: Promise<void> = Promise.resolve();
  private queued = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Memory for small frames' sends, free while no write holds it (see sendData). */
  private frameOut: Buffer | null = null;
  /** Why reading is stopped: the receiver's backpressure (1) and a held message (2). */
  private pausedFor = 0;
  /** A large message left in the socket until its receive is posted (see hold). */
  private held: { f: DataFrame; tail: Buffer | null; timer: NodeJS.Timeout } | null = null;
  /** False after a hold ran out or a receive without a buffer ended one (see noteReceive). */
  private mayHold = true;
  /** Set once the job has started: during start-up a control frame may follow a held message. */
  holdsEnabled = false;
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
    this.reader = new WsFrameReader(
      {
        frame: (opcode, data) => this.frameDone(opcode, data),
        chunk: () => this.chunked,
        chunkFrameEnd: () => this.chunkFrameEnd(),
        stopHere: () => this.held != null,
        stopped: (tail) => void (this.held!.tail = tail),
      },
      Math.max(opts.chunkBytes, MAX_HEADER) + MAX_HEADER + 8,
      this.inlineFrameBytes,
    );
    ws.binaryType = 'nodebuffer';
    // ws's own parser would copy every frame into a new buffer before we copy it again into the
    // receive buffer; frames are read here instead (see onBytes), straight off the socket.
    if (ws.readyState === 1) this.takeOver();
    else ws.once('open', () => this.takeOver());
    ws.on('close', (code: number, reason: Buffer) => this.die(`connection closed (code ${code}${reason.length ? `, ${reason.toString()}` : ''})`));
    ws.on('error', (e: Error) => this.die(`connection error: ${e.message}`));
    this.hs = new Handshake(side, opts.token, opts.rank, expectedPeer);
    const opening = this.hs.opening();
    if (opening) this.sendRaw(encodeControl(opening));
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
    if (this.held) clearTimeout(this.held.timer);
    this.held = null;
    for (const w of this.drainWaiters.splice(0)) w();
    this.onDead(reason);
  }

  private reject(reason: string): void {
    this.opts.log.warn(`rejected a frame from ${this.peer >= 0 ? `rank ${this.peer}` : 'an unauthenticated connection'}: ${reason}`);
    if (!this.authenticated) this.ws.close(1008, reason.slice(0, 120));
  }

  // ---------------------------------------------------------------------------------------------
  // Reading WebSocket frames (RFC 6455) off the socket

  // The framing, read without I/O (wsreader.ts): whole frames come back to frameDone, raw chunks'
  // payloads go to the chunked message being received, and a hold stops reading after its frame.
  private readonly reader: WsFrameReader;

  private takeOver(): void {
    const sock = this.socket;
    for (const l of sock.listeners('data')) sock.removeListener('data', l as (b: Buffer) => void);
    // Bytes that arrived with the upgrade response come as 'data'; the rest through ownReads when
    // the socket was made by reads.ts (mesh.ts makes every socket so), else as 'data' too.
    sock.on('data', (chunk: Buffer) => this.onBytes(chunk));
    ownReads(sock, this);
  }

  /** ReadTarget: the payload of a raw chunk is read straight into the receive buffer. */
  nextRead(scratch: Buffer): Uint8Array {
    const c = this.chunked;
    const want = this.reader.directWanted;
    if (want > 0 && c) return c.dest.subarray(c.filled, c.filled + want);
    // Between the chunks of a message: read the next chunk's header alone, then its payload direct.
    if (c && !this.reader.inFrame) return scratch.subarray(0, 14);
    return scratch;
  }

  /** ReadTarget: `n` bytes of the current chunk landed in the receive buffer. */
  onDirect(n: number): void {
    this.heard = true;
    try {
      this.reader.advanceDirect(n);
    } catch (e) {
      this.fail(`unreadable stream: ${(e as Error).message}`);
    }
  }

  /** The stream cannot be read any further (framing lost): drop the connection. */
  private fail(reason: string): void {
    this.opts.log.warn(`closing the connection ${this.peer >= 0 ? `to rank ${this.peer}` : 'from an unauthenticated peer'}: ${reason}`);
    this.reader.reset();
    this.chunked = null;
    try {
      this.ws.close(1002, reason.slice(0, 120));
    } catch {
      /* already closing */
    }
    this.socket.destroy();
    this.die(reason);
  }

  /** ReadTarget: bytes read into scratch (or delivered as 'data'); nothing here outlives the call. */
  onBytes(input: Buffer, end = input.length): void {
    this.heard = true;
    try {
      this.reader.push(input, end);
    } catch (e) {
      this.fail(`unreadable stream: ${(e as Error).message}`);
    }
  }

  /** A raw chunk's payload is in the message's memory: the message may be complete. */
  private chunkFrameEnd(): void {
    const c = this.chunked!;
    if (c.left === 0) {
      this.chunked = null;
      this.sink.onChunkedEnd(this.peer, c.f, c.dest);
    }
  }

  /** The largest frame a small message (or any frame but a raw chunk) makes. */
  private get inlineFrameBytes(): number {
    return this.opts.inlineBytes + MAX_HEADER + 14;
  }

  private frameDone(opcode: number, data: Buffer): void {
    switch (opcode) {
      case 1:
      case 2:
        return this.receive(data, opcode === 2);
      case 9: // ping: answer with the same payload
        return this.writeControl(0xa, data);
      case 10:
        this.lastSeen = Date.now();
        return;
      case 8: {
        const code = data.length >= 2 ? data.readUInt16BE(0) : 1005;
        const reason = data.length > 2 ? data.subarray(2).toString() : '';
        if (this.ws.readyState === 1) this.writeControl(0x8, data.subarray(0, 2));
        this.socket.end();
        this.die(`connection closed (code ${code}${reason ? `, ${reason}` : ''})`);
        return;
      }
    }
  }

  private writeControl(opcode: number, payload: Buffer): void {
    if (this.socket.destroyed) return;
    const masked = this.side === 'client';
    const h = Buffer.alloc(2 + (masked ? 4 : 0));
    h[0] = 0x80 | opcode;
    h[1] = (masked ? 0x80 : 0) | payload.length;
    this.socket.write(Buffer.concat([h, payload]));
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
      else {
        // Held only while nothing is being sent to the peer: two ranks that each send first and
        // receive after must both keep reading.
        const hold = this.holdsEnabled && this.mayHold && this.opts.holdMs > 0 && this.pendingBytes === 0 && this.queued === 0;
        const dest = this.sink.onChunkedBegin(this.peer, f, hold);
        if (dest) this.chunked = { f, dest, filled: 0, left: f.bytes };
        else this.hold(f);
      }
    } else if (f.kind === Kind.Lost) this.sink.onLostNotice(this.peer, f.rank, f.reason);
    else if (f.kind === Kind.Bye) {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      this.ws.close(1000, 'bye');
    } else this.onControl(f);
  }

  private handshake(f: Frame): void {
    const step = this.hs.step(f);
    if (step.reject) return this.reject(step.reject);
    this.peer = this.hs.peer;
    if (step.send) this.sendRaw(encodeControl(step.send));
    if (step.accepted) this.accept();
  }

  private accept(): void {
    this.authenticated = true;
    this.startHeartbeat();
    this.onAuthenticated();
  }

  /** The WebSocket's TCP socket, written to directly (one write per frame). */
  private get socket(): Socket {
    return socketOf(this.ws);
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
    // About to send to the peer, which may wait for this before reading what we send it: read on.
    if (this.held && bytes.byteLength > inlineBytes) this.release();
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
    if (this.queued === 0 && bytes.byteLength <= inlineBytes && this.pendingBytes < this.opts.highWaterBytes && this.socket.writableLength < this.opts.highWaterBytes) {
      // Fast path: the payload is copied into the frame, so the caller's buffer is free at once;
      // a failed write kills the connection, which fails what depends on the peer. Nothing waits
      // on the write: the socket's own count of unwritten bytes bounds this path.
      if (this.closed || this.ws.readyState !== 1) return Promise.reject(new ProtocolError('connection is closed'));
      // The frame is built in memory reused from the last such send when that write went to the
      // kernel at once (as it nearly always does): fresh memory for every message costs a page
      // fault per 4 KiB written, more than the rest of the send at tens of KiB.
      const reuse = this.frameOut ?? Buffer.allocUnsafeSlow(this.inlineFrameBytes);
      this.frameOut = null;
      const sock = this.socket;
      sock.write(wsData(this.side === 'client', comm, tag, dtype, bytes.byteLength, 0, meta, bytes, reuse));
      if (sock.writableLength === 0) this.frameOut = reuse; // else the socket still holds it
      return null;
    }
    if (this.queued === 0 && this.pendingBytes + bytes.byteLength <= this.opts.highWaterBytes && !this.closed && this.ws.readyState === 1) {
      // Nothing ahead of it and room under the high-water mark: the whole message goes to the socket
      // now, not after the caller's next await (a pipeline stage computes right after sending).
      // Corked: the announcement and every chunk leave in one writev (a separate small write costs
      // the receiver a wake-up of its own).
      // The announcement and the first chunk's header are one buffer; only the last write reports.
      const n = bytes.byteLength;
      const masked = this.side === 'client';
      const head = wsFrameThenHeader(encodeData(comm, tag, dtype, n, Math.ceil(n / chunkBytes), meta), masked, Math.min(chunkBytes, n));
      const total = head.byteLength + n;
      const sock = this.socket;
      this.pendingBytes += total;
      return new Promise<void>((resolve, reject) => {
        const done = this.afterWrite(total, (e) => (e ? reject(e) : resolve()));
        sock.cork();
        sock.write(head);
        for (let off = 0; off < n; off += chunkBytes) {
          const end = Math.min(off + chunkBytes, n);
          if (off > 0) sock.write(wsHeader(end - off, masked));
          if (end < n) sock.write(bytes.subarray(off, end));
          else sock.write(bytes.subarray(off, end), done);
        }
        sock.uncork();
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

  // ---------------------------------------------------------------------------------------------
  // Holding a large message that arrived before its receive
  //
  // Read now, it would have to go to memory of ours and be copied again when the receive is posted;
  // left in the socket for a moment, it is read straight into the posted buffer (MPI's rendezvous
  // protocol gets the same by asking the receiver before sending). In collectives the receive
  // usually follows within a few milliseconds: a rank leaves the previous call a little late.

  private hold(f: DataFrame): void {
    // Unread, the socket says nothing of the peer: the hold ends well before it would look silent.
    const timer = setTimeout(() => this.release(true), Math.min(this.opts.holdMs, this.opts.peerTimeoutMs / 2));
    this.held = { f, tail: null, timer };
    this.setPaused(2, true);
  }

  /**
   * A receive from the peer was posted (`waiting`: nothing it matches has arrived yet). A held
   * message is read on, into that receive's buffer if it is the one. Holds pay only for receives
   * into a buffer of the caller's (one without gets the memory the message was read into, held or
   * not): a receive without one ends them, one with one brings them back, as after a hold ran out.
   */
  noteReceive(waiting: boolean, withBuffer: boolean): void {
    if (withBuffer) this.mayHold = true;
    if (waiting && this.held) {
      if (!withBuffer) this.mayHold = false;
      this.release();
    }
  }

  /**
   * Reads the held message on: into the posted buffer when its receive is now waiting, else into
   * memory of ours as any early message. After a hold that ran out, none until the next receive
   * into a caller's buffer.
   */
  private release(timedOut = false): void {
    const h = this.held;
    if (!h) return;
    if (timedOut) this.mayHold = false;
    clearTimeout(h.timer);
    this.held = null;
    if (this.closed) return;
    this.chunked = { f: h.f, dest: this.sink.onChunkedBegin(this.peer, h.f, false)!, filled: 0, left: h.f.bytes };
    if (h.tail) this.onBytes(h.tail);
    if (!this.held) this.setPaused(2, false);
  }

  private setPaused(reason: number, on: boolean): void {
    const was = this.pausedFor;
    this.pausedFor = on ? was | reason : was & ~reason;
    if (was === 0 && this.pausedFor !== 0) this.ws.pause();
    else if (was !== 0 && this.pausedFor === 0 && !this.closed) this.ws.resume();
  }

  /** Stops reading from the socket (receiver-side backpressure). */
  pause(): void {
    this.setPaused(1, true);
  }
  /** Resumes reading. */
  resume(): void {
    this.setPaused(1, false);
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
