import type WebSocket from 'ws';
import type { Logger } from '../log.js';
import type { Socket } from 'node:net';
import { ownReads, socketOf, type ReadTarget } from './reads.js';
import { Handshake } from './handshake.js';
import { Holds } from './holds.js';
import { Sender } from './sender.js';
import { WsFrameReader } from './wsreader.js';
import { decodeFrame, encodeControl, Kind, MAX_HEADER, type DataFrame, type Frame } from './frame.js';

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

/** Reasons to stop reading from the socket, as bits: either keeps it stopped. */
const enum ReadStop {
  /** The receiver asked (its memory for early messages is full). */
  Backpressure = 1,
  /** A large message is held until its receive is posted. */
  Hold = 2,
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
  private timer: NodeJS.Timeout | null = null;
  /** Why reading is stopped: a set of ReadStop bits. */
  private pausedFor = 0;
  /** The sending half: three paths, order and backpressure (sender.ts). */
  private readonly sender: Sender;
  /** Large messages left in the socket until their receive is posted (holds.ts). */
  readonly holds: Holds;
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
    this.sender = new Sender(
      () => this.socket,
      () => !this.closed && this.ws.readyState === 1,
      { masked: side === 'client', inlineBytes: opts.inlineBytes, chunkBytes: opts.chunkBytes, highWaterBytes: opts.highWaterBytes },
    );
    this.holds = new Holds(
      {
        stopReading: (on) => this.setPaused(ReadStop.Hold, on),
        readOn: (f, tail) => this.readOn(f, tail),
      },
      opts,
    );
    this.reader = new WsFrameReader(
      {
        frame: (opcode, data) => this.frameDone(opcode, data),
        chunk: () => this.chunked,
        chunkFrameEnd: () => this.chunkFrameEnd(),
        stopHere: () => this.holds.holding,
        stopped: (tail) => this.holds.keepTail(tail),
      },
      Math.max(opts.chunkBytes, MAX_HEADER) + MAX_HEADER + 8,
      this.sender.inlineFrameBytes,
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
    if (opening) this.sender.sendRaw(encodeControl(opening));
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
    this.holds.drop();
    this.sender.fail();
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

  /** A chunk's payload is in the message's memory: the message may be complete. */
  private chunkFrameEnd(): void {
    const c = this.chunked!;
    if (c.left === 0) {
      this.chunked = null;
      this.sink.onChunkedEnd(this.peer, c.f, c.dest);
    }
  }

  private frameDone(opcode: number, data: Buffer): void {
    switch (opcode) {
      case 1:
      case 2:
        return this.receive(data, opcode === 2);
      case 9: // ping: answer with the same payload
        return this.sender.sendWsControl(0xa, data);
      case 10:
        this.lastSeen = Date.now();
        return;
      case 8: {
        const code = data.length >= 2 ? data.readUInt16BE(0) : 1005;
        const reason = data.length > 2 ? data.subarray(2).toString() : '';
        if (this.ws.readyState === 1) this.sender.sendWsControl(0x8, data.subarray(0, 2));
        this.socket.end();
        this.die(`connection closed (code ${code}${reason ? `, ${reason}` : ''})`);
        return;
      }
    }
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
      return this.chunkFrameEnd();
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
        const dest = this.sink.onChunkedBegin(this.peer, f, this.holds.allowed(this.sender.idle));
        if (dest) this.chunked = { f, dest, filled: 0, left: f.bytes };
        else this.holds.hold(f);
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
    if (step.send) this.sender.sendRaw(encodeControl(step.send));
    if (step.accepted) this.accept();
  }

  private accept(): void {
    this.authenticated = true;
    this.startHeartbeat();
    this.onAuthenticated();
  }

  /** The WebSocket's TCP socket, read by this connection and written to by its sender. */
  private get socket(): Socket {
    return socketOf(this.ws);
  }

  /** Sends a control frame after any queued data. */
  sendControl(f: Exclude<Frame, DataFrame>): void {
    this.sender.sendControl(f);
  }

  /**
   * Sends a typed-array message; resolves when the buffer may be reused (null: it may be already).
   * See Sender for the paths it may take.
   */
  sendData(comm: string, tag: number, dtype: number, bytes: Uint8Array, meta: unknown): Promise<void> | null {
    // About to send to the peer, which may wait for this before reading what we send it: read on.
    if (this.holds.holding && bytes.byteLength > this.opts.inlineBytes) this.holds.release();
    return this.sender.sendData(comm, tag, dtype, bytes, meta);
  }

  /** A receive from the peer was posted (see Holds.noteReceive). */
  noteReceive(waiting: boolean, withBuffer: boolean): void {
    this.holds.noteReceive(waiting, withBuffer);
  }

  /** A released hold: the message is read on into memory the sink gives, then what followed it. */
  private readOn(f: DataFrame, tail: Buffer | null): void {
    if (this.closed) return;
    this.chunked = { f, dest: this.sink.onChunkedBegin(this.peer, f, false)!, filled: 0, left: f.bytes };
    if (tail) this.onBytes(tail);
  }

  private setPaused(reason: ReadStop, on: boolean): void {
    const was = this.pausedFor;
    this.pausedFor = on ? was | reason : was & ~reason;
    if (was === 0 && this.pausedFor !== 0) this.ws.pause();
    else if (was !== 0 && this.pausedFor === 0 && !this.closed) this.ws.resume();
  }

  /** Stops reading from the socket (receiver-side backpressure). */
  pause(): void {
    this.setPaused(ReadStop.Backpressure, true);
  }
  /** Resumes reading. */
  resume(): void {
    this.setPaused(ReadStop.Backpressure, false);
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
    this.sender.flushed().finally(() => ws.close(1000, 'bye'));
  }
}
