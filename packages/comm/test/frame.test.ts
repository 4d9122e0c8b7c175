import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { CommUsageError, decodeFrame, encodeControl, encodeData, ProtocolError } from '../src/index.js';

const MAX = 1 << 20;

/** A frame with any msgpack header, bypassing the encoder's canonical form. */
function rawFrame(header: unknown[]): Buffer {
  const h = new Packr({ useRecords: false, useBigIntExtension: true } as never).pack(header);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(h.length);
  return Buffer.concat([len, h]);
}

// A small deterministic generator, so that a failure can be replayed.
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

describe('frame codec', () => {
  it('refuses at the sender a header object larger than a receiver accepts, naming the limit', () => {
    const big = { text: 'x'.repeat(70_000) };
    expect(() => encodeData('world', 1, 3, 0, 0, big)).toThrow(CommUsageError);
    expect(() => encodeData('world', 1, 3, 0, 0, big)).toThrow(/exceeds the 65536-byte limit: send large data as the payload, or objects with sendObject/);
    const fits = { text: 'x'.repeat(60_000) };
    expect(decodeFrame(encodeData('world', 1, 3, 0, 0, fits), MAX)).toMatchObject({ meta: fits });
  });

  it('round-trips data frames with typed payloads and header objects', () => {
    const payload = new Uint8Array(Float32Array.of(1.5, -2, 3).buffer);
    const f = decodeFrame(encodeData('world/0.1', 7, 0, 12, 0, { shape: [1, 3] }, payload), MAX);
    expect(f).toMatchObject({ kind: 0, comm: 'world/0.1', tag: 7, dtype: 0, bytes: 12, chunks: 0, meta: { shape: [1, 3] } });
    if (f.kind !== 0) throw new Error('kind');
    expect(Array.from(new Float32Array(new Uint8Array(f.payload).buffer))).toEqual([1.5, -2, 3]);
    const announce = decodeFrame(encodeData('world', -3, 2, 4 << 20, 2, undefined), 8 << 20);
    expect(announce).toMatchObject({ kind: 0, tag: -3, chunks: 2, bytes: 4 << 20 });
  });

  it('round-trips control frames', () => {
    for (const f of [
      { kind: 2, rank: 3, reason: 'gone' },
      { kind: 5, rank: 0, nonce: 'abc' },
      { kind: 3, rank: 2, proof: 'p', nonce: 'n' },
      { kind: 6, rank: 1, proof: 'q' },
      { kind: 7, host: '127.0.0.1', port: 4000 },
      { kind: 8, table: [['127.0.0.1', 1], ['h', 2]] },
      { kind: 9 },
    ] as const) {
      expect(decodeFrame(encodeControl(f as never), MAX)).toEqual(f);
    }
  });

  it('rejects lies about sizes, oversized messages, unknown kinds and bad fields', () => {
    const cases: [Uint8Array, RegExp][] = [
      [encodeData('w', 1, 0, 8, 0, undefined, new Uint8Array(4)), /declares 8 bytes in 0 chunks but carries 4/],
      [encodeData('w', 1, 0, 2 * MAX, 3, undefined), /exceeds the limit/],
      [encodeData('w', 1, 9, 4, 0, undefined, new Uint8Array(4)), /malformed data frame/],
      [rawFrame([0, 'w', 1.5, 0, 0, 0]), /malformed data frame/],
      [rawFrame([0, 'w', 1, 0, 2n ** 60n, 0]), /malformed data frame/],
      [Buffer.from([2, 0, 0, 0, 0x91, 0x63]), /unknown frame kind 99/],
      [Buffer.from([200, 0, 0, 0, 1]), /header length 200 is invalid/],
      [Buffer.from([1, 0]), /shorter than its 4-byte header length/],
      [Buffer.from([2, 0, 0, 0, 0xa5, 0x61]), /not valid msgpack/],
    ];
    for (const [buf, msg] of cases) expect(() => decodeFrame(buf, MAX)).toThrow(msg);
  });

  it('survives fuzzing: random bytes, truncations and bit flips only ever raise ProtocolError', () => {
    const rand = rng(12345);
    const valid = [
      encodeData('world', 3, 0, 16, 0, { shape: [2, 2] }, new Uint8Array(16)),
      encodeData('world/1.0', -9, 1, 1 << 16, 4, undefined),
      encodeControl({ kind: 8, table: [['127.0.0.1', 5000]] }),
      encodeControl({ kind: 3, rank: 1, proof: 'x'.repeat(64), nonce: 'y'.repeat(32) }),
    ];
    let rejected = 0;
    for (let i = 0; i < 20000; i++) {
      let buf: Uint8Array;
      const mode = i % 3;
      if (mode === 0) buf = Uint8Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
      else {
        const base = valid[i % valid.length]!;
        buf = mode === 1 ? base.subarray(0, Math.floor(rand() * base.length)) : Uint8Array.from(base);
        if (mode === 2) for (let k = 0; k < 3; k++) buf[Math.floor(rand() * buf.length)] ^= 1 << Math.floor(rand() * 8);
      }
      try {
        decodeFrame(buf, MAX);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(10000);
  });
});
