// The WebSocket framing of a connection's byte stream, read without I/O: bytes in, frames out.
// The connection feeds it what the socket read and tells it where raw chunks go; it hands back
// whole frames, and the payload bytes of raw chunks as they come.

/** Where the payload of a raw chunk goes: the memory of the message being received, from `filled`. */
export interface ChunkDest {
  dest: Uint8Array;
  filled: number;
  left: number;
}

/** What the reader hands its owner. */
export interface FrameHandler {
  /**
   * A whole frame (anything but a raw chunk), unmasked. `data` may view the caller's read buffer
   * or the reader's reused memory: valid during the call only.
   */
  frame(opcode: number, data: Buffer): void;
  /** The message whose raw chunks (unmasked binary frames) are being received, or null. */
  chunk(): ChunkDest | null;
  /** A raw chunk frame's payload is complete (the ChunkDest has been advanced by its bytes). */
  chunkFrameEnd(): void;
  /** After a frame: whether to stop reading here; the bytes after it go to `stopped`. */
  stopHere(): boolean;
  /** The rest of the input when reading stopped (a copy, or null when nothing was left). */
  stopped(tail: Buffer | null): void;
}

interface Partial {
  opcode: number;
  left: number;
  mask: Buffer | null;
  at: number;
  /** Pieces of a small frame put together, or null for a raw chunk (bytes go to the message). */
  parts: Buffer[] | null;
  /** Reused memory a small frame is assembled in, when it fits. */
  whole: Buffer | null;
}

/** The stream cannot be read any further: framing is lost. */
export class FramingError extends Error {}

/**
 * Reads WebSocket frames (RFC 6455, unfragmented, binary/text/close/ping/pong) from a stream given
 * in pieces of any size. Unmasked binary frames while a chunked message is open are raw chunks:
 * their payload goes straight to that message's memory, and `directWanted` says how many bytes of
 * one a read may put there itself (`advanceDirect` then accounts for them).
 */
export class WsFrameReader {
  private frame: Partial | null = null;
  private rest: Buffer | null = null;
  private assembly: Buffer | null = null;

  constructor(
    private readonly handler: FrameHandler,
    /** The largest frame accepted. */
    private readonly maxFrame: number,
    /** Frames up to this size are assembled in memory reused from one frame to the next. */
    private readonly assemblyBytes: number,
  ) {}

  /** Whether a frame is partly read. */
  get inFrame(): boolean {
    return this.frame != null;
  }

  /** Bytes of a raw chunk's payload that may be read straight into the message (0: none now). */
  get directWanted(): number {
    const f = this.frame;
    return f && !f.parts ? f.left : 0;
  }

  /** `n` bytes of the current raw chunk were read straight into the message's memory. */
  advanceDirect(n: number): void {
    const f = this.frame;
    const c = this.handler.chunk();
    if (!f || f.parts || !c || n > f.left) throw new FramingError('bytes read into a receive buffer that no chunk was expecting');
    f.left -= n;
    f.at += n;
    c.filled += n;
    c.left -= n;
    if (f.left === 0) this.endFrame();
  }

  /** Forgets any partial frame (the stream is being dropped). */
  reset(): void {
    this.frame = null;
    this.rest = null;
  }

  /** Reads `input[0, inputEnd)`; throws FramingError when the stream cannot be read on. */
  push(input: Buffer, inputEnd = input.length): void {
    let chunk = input;
    let end = inputEnd;
    if (this.rest) {
      chunk = Buffer.concat([this.rest, input.subarray(0, inputEnd)]);
      end = chunk.length;
      this.rest = null;
    }
    let off = 0;
    const keep = () => void (this.rest = Buffer.from(chunk.subarray(off, end)));
    while (off < end) {
      if (!this.frame) {
        const n = end - off;
        if (n < 2) return keep();
        const b0 = chunk[off]!;
        const b1 = chunk[off + 1]!;
        if (b0 & 0x70) throw new FramingError('a frame with reserved bits set');
        if (!(b0 & 0x80)) throw new FramingError('a fragmented message');
        const opcode = b0 & 0x0f;
        const masked = (b1 & 0x80) !== 0;
        let len = b1 & 0x7f;
        let h = 2;
        if (len === 126) {
          if (n < 4) return keep();
          len = chunk.readUInt16BE(off + 2);
          h = 4;
        } else if (len === 127) {
          if (n < 10) return keep();
          const big = chunk.readBigUInt64BE(off + 2);
          if (big > BigInt(this.maxFrame)) throw new FramingError(`a frame of ${big} bytes (limit ${this.maxFrame})`);
          len = Number(big);
          h = 10;
        }
        if (len > this.maxFrame) throw new FramingError(`a frame of ${len} bytes (limit ${this.maxFrame})`);
        if (masked && n < h + 4) return keep();
        let mask: Buffer | null = null;
        if (masked) {
          const k = chunk.subarray(off + h, off + h + 4);
          if (k[0]! | k[1]! | k[2]! | k[3]!) mask = Buffer.from(k);
          h += 4;
        }
        off += h;
        if (opcode >= 8 && len > 125) throw new FramingError('a control frame longer than 125 bytes');
        if (opcode !== 1 && opcode !== 2 && opcode !== 8 && opcode !== 9 && opcode !== 10) throw new FramingError(`a frame with opcode ${opcode}`);
        const c = opcode === 2 && mask == null ? this.handler.chunk() : null;
        if (c && len > c.left) throw new FramingError(`a chunk of ${len} bytes overruns a message with ${c.left} bytes left`);
        if (!c && mask == null && end - off >= len) {
          // The common case: a whole unmasked frame in this read, handled in place.
          const data = chunk.subarray(off, off + len);
          off += len;
          this.handler.frame(opcode, data);
          if (this.handler.stopHere()) return this.handler.stopped(off < end ? Buffer.from(chunk.subarray(off, end)) : null);
          continue;
        }
        // A frame in pieces: the bytes read so far must be kept, the read buffer being reused.
        // Small frames are put together in reused memory: a fresh buffer per frame costs a page
        // fault per 4 KiB.
        const whole = !c && len <= this.assemblyBytes ? (this.assembly ??= Buffer.allocUnsafeSlow(this.assemblyBytes)) : null;
        this.frame = { opcode, left: len, mask, at: 0, parts: c ? null : [], whole };
        if (len === 0 && this.endFrame()) return this.handler.stopped(off < end ? Buffer.from(chunk.subarray(off, end)) : null);
        continue;
      }
      const f = this.frame;
      const take = Math.min(f.left, end - off);
      let piece = chunk.subarray(off, off + take);
      off += take;
      f.left -= take;
      if (f.mask) {
        const un = Buffer.allocUnsafe(piece.length);
        for (let i = 0; i < piece.length; i++) un[i] = piece[i]! ^ f.mask[(f.at + i) & 3]!;
        piece = un;
      }
      if (f.whole) f.whole.set(piece, f.at);
      else if (f.parts) {
        if (f.left === 0 && f.parts.length === 0) f.parts.push(piece);
        else f.parts.push(f.mask ? piece : Buffer.from(piece));
      } else {
        const c = this.handler.chunk()!;
        c.dest.set(piece, c.filled);
        c.filled += piece.length;
        c.left -= piece.length;
      }
      f.at += take;
      if (f.left === 0 && this.endFrame()) return this.handler.stopped(off < end ? Buffer.from(chunk.subarray(off, end)) : null);
    }
  }

  /** The current frame is complete; returns whether reading must stop after it. */
  private endFrame(): boolean {
    const f = this.frame!;
    this.frame = null;
    if (!f.parts) {
      this.handler.chunkFrameEnd();
      return false;
    }
    this.handler.frame(f.opcode, f.whole ? f.whole.subarray(0, f.at) : f.parts.length === 1 ? f.parts[0]! : Buffer.concat(f.parts));
    return this.handler.stopHere();
  }
}
