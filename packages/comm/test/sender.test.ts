// The sending half of a connection alone, in-process: a Sender writes to a Writable in memory whose
// write callbacks the test releases, and what it wrote is read back with the real frame reader.
// Each of the three paths (inline, corked, queued) is checked for its bytes, its ordering against
// the others, its memory (copied or the caller's own) and when it lets the caller reuse the buffer.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../src/errors.js';
import { decodeFrame, Kind, type DataFrame, type Frame } from '../src/transport/frame.js';
import { Sender, type SenderOptions } from '../src/transport/sender.js';
import { WsFrameReader, type ChunkDest, type FrameHandler } from '../src/transport/wsreader.js';

/** A wire in memory: records every write; callbacks run at once, or when the test flushes. */
class MemoryWire extends Writable {
  writes: Buffer[] = [];
  /** Copies of the writes as they were when written. */
  copies: Buffer[] = [];
  /** writev calls (a corked group), by number of buffers. */
  groups: number[] = [];
  auto = true;
  private waiting: (() => void)[] = [];
  constructor() {
    super({ highWaterMark: 1 << 30 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.writes.push(chunk);
    this.copies.push(Buffer.from(chunk));
    this.groups.push(1);
    this.done(cb);
  }
  override _writev(chunks: { chunk: Buffer }[], cb: () => void): void {
    for (const c of chunks) this.writes.push(c.chunk), this.copies.push(Buffer.from(c.chunk));
    this.groups.push(chunks.length);
    this.done(cb);
  }
  private done(cb: () => void): void {
    if (this.auto) cb();
    else this.waiting.push(cb);
  }
  /** Lets every write waiting so far complete. */
  flush(): void {
    for (const cb of this.waiting.splice(0)) cb();
  }
  get bytes(): Buffer {
    return Buffer.concat(this.writes);
  }
}

interface Got {
  tag: number;
  bytes: Buffer;
  chunks: number;
}

/** Reads the wire's bytes back: data messages (whole or chunked) and control frames, in order. */
function readBack(bytes: Buffer): { messages: Got[]; controls: Frame[]; order: string[] } {
  const messages: Got[] = [];
  const controls: Frame[] = [];
  const order: string[] = [];
  let open: (ChunkDest & { f: DataFrame }) | null = null;
  const handler: FrameHandler = {
    frame(opcode, data) {
      expect(opcode).toBe(2);
      const f = decodeFrame(data, 1 << 30);
      if (f.kind !== Kind.Data) {
        controls.push(f);
        order.push(`control ${f.kind}`);
      } else if (f.chunks === 0) {
        messages.push({ tag: f.tag, bytes: Buffer.from(f.payload), chunks: 0 });
        order.push(`data ${f.tag}`);
      } else open = { f, dest: new Uint8Array(f.bytes), filled: 0, left: f.bytes };
    },
    chunk: () => open,
    chunkFrameEnd() {
      if (open!.left === 0) {
        messages.push({ tag: open!.f.tag, bytes: Buffer.from(open!.dest), chunks: open!.f.chunks });
        order.push(`data ${open!.f.tag}`);
        open = null;
      }
    },
    stopHere: () => false,
    stopped: () => {},
  };
  new WsFrameReader(handler, 1 << 30, 1 << 20).push(bytes);
  expect(open).toBeNull();
  return { messages, controls, order };
}

const OPTS: SenderOptions = { masked: false, inlineBytes: 1024, chunkBytes: 4096, highWaterBytes: 16384 };

function setup(opts: Partial<SenderOptions> = {}) {
  const wire = new MemoryWire();
  let open = true;
  const sender = new Sender(() => wire, () => open, { ...OPTS, ...opts });
  return { wire, sender, close: () => void (open = false) };
}

const payload = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 255);
const tick = () => new Promise((r) => setImmediate(r));

describe('Sender', () => {
  it('sends a small message inline: the buffer is free at once and the frame memory is reused', () => {
    const { wire, sender } = setup();
    const a = payload(1000, 1);
    expect(sender.sendData('w', 1, 0, a, null)).toBeNull();
    a.fill(0); // free at once: the frame holds a copy
    expect(sender.sendData('w', 2, 0, payload(10, 2), { note: 'x' })).toBeNull();
    expect(wire.writes).toHaveLength(2);
    // Both writes went to the wire at once, so the second frame was built in the first one's memory.
    expect(wire.writes[1]!.buffer).toBe(wire.writes[0]!.buffer);
    const first = readBack(wire.copies[0]!).messages[0]!;
    expect(first).toEqual({ tag: 1, bytes: Buffer.from(payload(1000, 1)), chunks: 0 });
    expect(wire.writes[0]!.equals(wire.copies[0]!)).toBe(false); // overwritten since: reused
    const second = readBack(wire.writes[1]!).messages[0]!;
    expect(second).toEqual({ tag: 2, bytes: Buffer.from(payload(10, 2)), chunks: 0 });
  });

  it('does not reuse frame memory that the wire still holds', () => {
    const { wire, sender } = setup();
    wire.auto = false;
    wire.cork(); // the wire keeps the first frame unwritten
    sender.sendData('w', 1, 0, payload(500, 1), null);
    sender.sendData('w', 2, 0, payload(500, 2), null);
    wire.uncork();
    wire.flush();
    const { messages } = readBack(wire.bytes);
    expect(messages.map((m) => m.tag)).toEqual([1, 2]);
    expect(messages[0]!.bytes.equals(Buffer.from(payload(500, 1)))).toBe(true);
    expect(messages[1]!.bytes.equals(Buffer.from(payload(500, 2)))).toBe(true);
  });

  it('sends a large message corked, straight from the caller\'s memory, and resolves on its write', async () => {
    const { wire, sender } = setup();
    wire.auto = false;
    const big = payload(10_000, 3); // 3 chunks of at most 4096
    const sent = sender.sendData('w', 7, 0, big, { k: 1 });
    expect(sent).toBeInstanceOf(Promise);
    // One writev: announcement + first header, then payload, header, payload, header, payload.
    expect(wire.groups).toEqual([6]);
    const views = wire.writes.filter((w) => w.buffer === big.buffer);
    expect(views.map((v) => v.byteLength)).toEqual([4096, 4096, 1808]);
    let done = false;
    void sent!.then(() => (done = true));
    await tick();
    expect(done).toBe(false); // the wire has not reported the write
    expect(sender.idle).toBe(false);
    wire.flush();
    await sent;
    expect(sender.idle).toBe(true);
    const { messages } = readBack(wire.bytes);
    expect(messages).toEqual([{ tag: 7, bytes: Buffer.from(big), chunks: 3 }]);
  });

  it('masks frames for a client with an all-zero key, which the reader accepts', () => {
    const { wire, sender } = setup({ masked: true });
    sender.sendData('w', 1, 0, payload(100, 1), null);
    void sender.sendData('w', 2, 0, payload(5000, 2), null);
    expect(wire.writes[0]![1]! & 0x80).toBe(0x80);
    const { messages } = readBack(wire.bytes);
    expect(messages.map((m) => [m.tag, m.bytes.length])).toEqual([
      [1, 100],
      [2, 5000],
    ]);
  });

  it('queues past the high-water mark and keeps every message in order', async () => {
    const { wire, sender } = setup({ highWaterBytes: 12_000 });
    wire.auto = false;
    const sent: (Promise<void> | null)[] = [];
    sent.push(sender.sendData('w', 1, 0, payload(11_990, 1), null)); // corked: the mark is reached
    sent.push(sender.sendData('w', 2, 0, payload(8_000, 2), null)); // over the mark: queued
    sent.push(sender.sendData('w', 3, 0, payload(100, 3), null)); // small, but behind a queued one
    sender.sendControl({ kind: Kind.Lost, rank: 5, reason: 'test' }); // after the queued data
    expect(sent[2]).toBeInstanceOf(Promise);
    await tick();
    // Nothing of the queued messages is written while the first one is unacknowledged.
    expect(readBack(wire.bytes).order).toEqual(['data 1']);
    wire.flush();
    for (let i = 0; i < 20 && !sender.idle; i++) {
      await tick();
      wire.flush();
    }
    await Promise.all(sent);
    const { messages, order, controls } = readBack(wire.bytes);
    expect(order).toEqual(['data 1', 'data 2', 'data 3', `control ${Kind.Lost}`]);
    expect(messages[1]!.bytes.equals(Buffer.from(payload(8_000, 2)))).toBe(true);
    expect(controls).toEqual([{ kind: Kind.Lost, rank: 5, reason: 'test' }]);
  });

  it('sends a message that would fit under the mark after one queued before it', async () => {
    const { wire, sender } = setup({ highWaterBytes: 12_000 });
    const a = sender.sendData('w', 1, 0, payload(20_000, 1), null); // larger than the mark: queued
    const b = sender.sendData('w', 2, 0, payload(2_000, 2), null); // would fit, but is behind it
    await Promise.all([a, b]);
    expect(readBack(wire.bytes).order).toEqual(['data 1', 'data 2']);
  });

  it('holds a queued message\'s chunks while the wire is behind (backpressure)', async () => {
    const { wire, sender } = setup({ highWaterBytes: 6000 });
    wire.auto = false;
    const big = payload(20_000, 9); // 5 chunks of 4096 at most, through the queue
    const sent = sender.sendData('w', 1, 0, big, null)!;
    const written = () => wire.writes.filter((w) => w.buffer === big.buffer).reduce((n, w) => n + w.byteLength, 0);
    const seen: number[] = [];
    let acked = 0;
    for (let i = 0; i < 20 && written() < big.byteLength; i++) {
      await tick();
      // Never more than the high-water mark and one chunk beyond what the wire reported done.
      expect(written() - acked).toBeLessThanOrEqual(6000 + 4096);
      seen.push(written());
      acked = written();
      wire.flush();
    }
    wire.flush();
    await sent;
    expect(new Set(seen).size).toBeGreaterThan(2); // it went out in steps, not at once
    expect(readBack(wire.bytes).messages[0]!.bytes.equals(Buffer.from(big))).toBe(true);
  });

  it('fails sends on a closed connection and wakes sends waiting for the wire', async () => {
    const { wire, sender, close } = setup({ highWaterBytes: 6000 });
    wire.auto = false;
    const first = sender.sendData('w', 1, 0, payload(5990, 1), null)!; // corked to the mark, never acknowledged
    const queued = sender.sendData('w', 2, 0, payload(5000, 2), null)!; // waits for the wire
    first.catch(() => {});
    await tick();
    close();
    sender.fail();
    await expect(queued).rejects.toThrow(ProtocolError);
    await expect(sender.sendData('w', 3, 0, payload(10, 3), null)!).rejects.toThrow('connection is closed');
    await expect(sender.sendData('w', 4, 0, payload(5000, 3), null)!).rejects.toThrow('connection is closed');
    expect(readBack(wire.bytes).order).toEqual(['data 1']);
  });

  it('sends an empty message inline', () => {
    const { wire, sender } = setup();
    expect(sender.sendData('w', 4, 0, new Uint8Array(0), null)).toBeNull();
    expect(readBack(wire.bytes).messages).toEqual([{ tag: 4, bytes: Buffer.alloc(0), chunks: 0 }]);
  });
});
