// The WebSocket frame reader alone, in-process: a stream of frames written by an encoder of the
// test's own, fed in pieces of random sizes (and with raw chunks partly read "straight into the
// message", as the socket does), must come out frame for frame; a hold stops reading exactly after
// its frame; broken framing raises FramingError.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FramingError, WsFrameReader, type ChunkDest, type FrameHandler } from '../src/transport/wsreader.js';

function encode(opcode: number, payload: Buffer, mask: Buffer | null = null): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const h = Buffer.alloc(head + (mask ? 4 : 0));
  h[0] = 0x80 | opcode;
  if (len < 126) h[1] = len;
  else if (len < 65536) (h[1] = 126), h.writeUInt16BE(len, 2);
  else (h[1] = 127), h.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) return Buffer.concat([h, payload]);
  h[1]! |= 0x80;
  mask.copy(h, head);
  return Buffer.concat([h, Buffer.from(payload.map((b, i) => b ^ mask[i & 3]!))]);
}

/** A small deterministic generator. */
function rng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

const MAX = 300_000;
const digest = (b: Buffer) => `${b.length}:${createHash('sha1').update(b).digest('hex')}`;

/** Frames as the reader hands them back; a text frame "open N" opens a chunked message of N bytes. */
class Recorder implements FrameHandler {
  frames: [number, string][] = [];
  messages: Buffer[] = [];
  open: ChunkDest | null = null;
  holdAfter = -1;
  tail: Buffer | null | undefined;
  frame(opcode: number, data: Buffer): void {
    this.frames.push([opcode, digest(data)]);
    const m = opcode === 1 ? /^open (\d+)$/.exec(data.toString()) : null;
    if (m) this.open = { dest: new Uint8Array(Number(m[1])), filled: 0, left: Number(m[1]) };
  }
  chunk(): ChunkDest | null {
    return this.open;
  }
  chunkFrameEnd(): void {
    if (this.open!.left === 0) {
      this.messages.push(Buffer.from(this.open!.dest));
      this.open = null;
    }
  }
  stopHere(): boolean {
    return this.frames.length === this.holdAfter;
  }
  stopped(tail: Buffer | null): void {
    this.tail = tail;
  }
}

/** A random stream: frames of every size class, masked and not, and chunked messages. */
function script(seed: number) {
  const r = rng(seed);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => r(256)));
  const parts: Buffer[] = [];
  const frames: [number, string][] = [];
  const messages: Buffer[] = [];
  for (let k = 0; k < 30; k++) {
    const kind = r(6);
    if (kind === 0) {
      const total = 1 + r(200_000);
      const msg = bytes(total);
      const open = Buffer.from(`open ${total}`);
      parts.push(encode(1, open));
      frames.push([1, digest(open)]);
      for (let at = 0; at < total; ) {
        const n = Math.min(total - at, 1 + r(70_000));
        parts.push(encode(2, msg.subarray(at, at + n)));
        at += n;
      }
      messages.push(msg);
    } else {
      const opcode = [1, 2, 9, 10][r(4)]!;
      const len = opcode >= 8 ? r(126) : [0, 1, 125, 126, 65535, 65536, 1 + r(MAX)][r(7)]!;
      const payload = bytes(len);
      parts.push(encode(opcode, payload, r(2) ? Buffer.from([1 + r(255), r(256), r(256), r(256)]) : null));
      frames.push([opcode, digest(payload)]);
    }
  }
  return { stream: Buffer.concat(parts), frames, messages };
}

/** Feeds a stream in random pieces; raw chunk payloads partly go "straight into the message". */
function feed(reader: WsFrameReader, rec: Recorder, stream: Buffer, r: (n: number) => number): void {
  for (let off = 0; off < stream.length; ) {
    const want = reader.directWanted;
    if (want > 0 && rec.open && r(2)) {
      const n = Math.min(want, 1 + r(want), stream.length - off);
      rec.open.dest.set(stream.subarray(off, off + n), rec.open.filled);
      off += n;
      reader.advanceDirect(n);
      continue;
    }
    const n = Math.min(stream.length - off, 1 + r(r(4) === 0 ? 100_000 : 300));
    // The reader may keep nothing of a read buffer beyond the call: hand it a copy, then spoil it.
    const piece = Buffer.from(stream.subarray(off, off + n));
    reader.push(piece, n);
    piece.fill(0xee);
    off += n;
  }
}

describe('WebSocket frame reader', () => {
  it.each([1, 2, 3, 4, 5, 6])('a random stream in random pieces comes out frame for frame (seed %i)', (seed) => {
    const { stream, frames, messages } = script(seed);
    const rec = new Recorder();
    const reader = new WsFrameReader(rec, MAX, 70_000);
    feed(reader, rec, stream, rng(seed * 7919));
    expect(rec.frames.length).toBe(frames.length);
    rec.frames.forEach((f, i) => expect(f, `frame ${i}`).toEqual(frames[i]));
    expect(rec.messages).toEqual(messages);
    expect(reader.inFrame).toBe(false);
  });

  it('stops after the frame its owner holds at, handing back exactly the bytes after it', () => {
    const { stream, frames } = script(9);
    for (const at of [1, 5, 17]) {
      const rec = new Recorder();
      rec.holdAfter = at;
      const reader = new WsFrameReader(rec, MAX, 70_000);
      reader.push(stream);
      expect(rec.frames.length).toBe(at);
      // Reading on from the tail, as a released hold does, gives the rest of the stream.
      rec.holdAfter = -1;
      if (rec.tail) reader.push(rec.tail);
      expect(rec.frames).toEqual(frames.slice(0, rec.frames.length));
      expect(rec.frames.length).toBeLessThanOrEqual(frames.length);
    }
  });

  it('raises FramingError for frames it cannot read on from', () => {
    const read = (b: Buffer, open: ChunkDest | null = null) => {
      const rec = new Recorder();
      rec.open = open;
      new WsFrameReader(rec, 1000, 500).push(b);
    };
    expect(() => read(Buffer.from([0x82 | 0x40, 0]))).toThrow(/reserved bits/);
    expect(() => read(Buffer.from([0x02, 0]))).toThrow(/fragmented/);
    expect(() => read(Buffer.from([0x83, 0]))).toThrow(/opcode 3/);
    expect(() => read(encode(9, Buffer.alloc(126)))).toThrow(/control frame longer than 125/);
    expect(() => read(encode(2, Buffer.alloc(1001)))).toThrow(FramingError);
    const big = Buffer.from([0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]);
    expect(() => read(big)).toThrow(/limit 1000/);
    expect(() => read(encode(2, Buffer.alloc(20)), { dest: new Uint8Array(10), filled: 0, left: 10 })).toThrow(/overruns a message with 10 bytes left/);
    const rec = new Recorder();
    expect(() => new WsFrameReader(rec, 1000, 500).advanceDirect(4)).toThrow(/no chunk was expecting/);
  });
});
