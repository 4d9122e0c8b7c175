import { describe, expect, it } from 'vitest';
import { Arena } from '../src/collectives/simd.js';
import { ScratchPool } from '../src/scratch.js';

describe('the scratch pool shared by early messages and collectives', () => {
  it('reuses a buffer of at least n and at most 2n bytes, the smallest that fits', () => {
    const pool = new ScratchPool(1 << 20, 8);
    const a = pool.take(1000);
    const b = pool.take(3000);
    expect(a.bytes).toBe(1000);
    pool.give(a);
    pool.give(b);
    expect(pool.take(900)).toBe(a);
    expect(pool.take(2000)).toBe(b); // 3000 <= 2 x 2000
    pool.give(b);
    const c = pool.take(1000); // 3000 > 2 x 1000: a new one, so that small users do not tie up large buffers
    expect(c).not.toBe(b);
    expect(pool.heldBytes).toBe(3000);
  });

  it('keeps at most maxBytes and maxBuffers, dropping the smallest first; never keeps one above maxBytes', () => {
    const pool = new ScratchPool(10_000, 3);
    const bufs = [1000, 2000, 3000, 4000].map((n) => pool.take(n));
    for (const b of bufs) pool.give(b);
    expect(pool.heldBytes).toBe(9000); // 1000 dropped for the buffer count
    pool.give(pool.take(5000)); // 14000 > 10000: 2000 and 3000 go
    expect(pool.heldBytes).toBe(9000);
    expect(pool.take(4000)).toBe(bufs[3]);
    pool.give({ bytes: 20_000, buffer: new ArrayBuffer(20_000), arena: null });
    expect(pool.heldBytes).toBe(5000);
  });

  it('gives collectives WebAssembly memory to sum in where SIMD runs, and plain memory to anyone', () => {
    const pool = new ScratchPool(1 << 24, 8);
    const plain = pool.take(4096);
    expect(plain.arena).toBeNull();
    pool.give(plain);
    const forSums = pool.take(4096, { arena: true });
    if (Arena.available()) {
      expect(forSums.arena).not.toBeNull();
      expect(forSums).not.toBe(plain); // a plain buffer does not serve a reduction that can sum in place
      pool.give(forSums);
      expect(pool.take(4096)).toBe(plain);
      expect(pool.take(4096)).toBe(forSums); // arena memory serves plain users too
    } else expect(forSums).toBe(plain);
  });
});
