// The arithmetic of reductions alone, in-process: every operator on every element type against a
// plain element-by-element reference, and the WebAssembly SIMD sums (an arena's, and the shared one
// for ordinary arrays) at lengths and offsets that leave tails and cross tiles.
import { describe, expect, it } from 'vitest';
import type { Buf } from '../src/dtypes.js';
import { checkOp, finishAvg, reduceInto, REDUCE_OPS, type ReduceOp } from '../src/collectives/ops.js';
import { addSimd, Arena } from '../src/collectives/simd.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

type Ctor = new (n: number) => Buf;
const TYPES: [string, Ctor][] = [
  ['Float32Array', Float32Array],
  ['Float64Array', Float64Array],
  ['Int32Array', Int32Array],
  ['Uint8Array', Uint8Array],
];

function filled(C: Ctor, n: number, seed: number): Buf {
  const r = rng(seed);
  const a = new C(n);
  for (let i = 0; i < n; i++) a[i] = C === Uint8Array ? Math.floor(r() * 256) : C === Int32Array ? Math.floor((r() - 0.5) * 2 ** 31) : (r() - 0.5) * 100;
  return a;
}

/** The reference: one element at a time, stored through the array (which rounds and wraps). */
function reference(d: Buf, s: Buf, op: ReduceOp): Buf {
  const out = d.slice() as Buf;
  for (let i = 0; i < s.length; i++) {
    const a = out[i]!;
    const b = s[i]!;
    const int = out instanceof Int32Array;
    out[i] = op === 'sum' || op === 'avg' ? a + b : op === 'prod' ? (int ? Math.imul(a, b) : a * b) : op === 'max' ? Math.max(a, b) : Math.min(a, b);
  }
  return out;
}

describe('reduction operators', () => {
  for (const [name, C] of TYPES) {
    for (const op of REDUCE_OPS) {
      it(`${op} on ${name}, short and long (SIMD) arrays`, () => {
        for (const n of [1, 7, 255, 256, 1001, 70_000]) {
          const d = filled(C, n, n);
          const s = filled(C, n, n + 1);
          const want = reference(d, s, op);
          reduceInto(d, s, op);
          expect(d).toEqual(want);
        }
      });
    }
  }

  it('max and min propagate NaN from either side', () => {
    const d = Float32Array.of(1, NaN, 3);
    reduceInto(d, Float32Array.of(NaN, 2, 1), 'max');
    expect(Array.from(d)).toEqual([NaN, NaN, 3]);
    const e = Float64Array.of(1, 5);
    reduceInto(e, Float64Array.of(NaN, 2), 'min');
    expect(Array.from(e)).toEqual([NaN, 2]);
  });

  it('finishes an average: floats divided, integers truncated toward zero', () => {
    const f = Float64Array.of(3, -3, 1);
    finishAvg(f, 2);
    expect(Array.from(f)).toEqual([1.5, -1.5, 0.5]);
    const i = Int32Array.of(7, -7, 1);
    finishAvg(i, 2);
    expect(Array.from(i)).toEqual([3, -3, 0]);
  });

  it('refuses an unknown operator by name, listing the known ones', () => {
    expect(checkOp('sum')).toBe('sum');
    expect(() => checkOp('band')).toThrow("unknown reduction 'band'; expected one of sum, avg, max, min, prod");
  });
});

describe('SIMD sums', () => {
  it.runIf(Arena.available())('add in an arena: views at any offset, sources inside or outside it, tails', () => {
    const arena = Arena.create(1 << 20)!;
    for (const [C, E] of [
      [Float32Array, 4],
      [Float64Array, 8],
      [Int32Array, 4],
    ] as const) {
      for (const [n, off] of [
        [3, 0],
        [1000, 16],
        [70_001, 48],
      ]) {
        const dst = new C(arena.buffer, off, n);
        dst.set(filled(C as unknown as Ctor, n, 5) as never);
        const outside = filled(C as unknown as Ctor, n, 6);
        const want = reference(dst.slice(), outside, 'sum');
        expect(arena.add(dst, outside as never)).toBe(true);
        expect(dst).toEqual(want);
        // A source in the arena itself (received into scratch): summed in place.
        const inside = new C(arena.buffer, off + Math.ceil((n * E) / 16) * 16, n);
        inside.set(filled(C as unknown as Ctor, n, 7) as never);
        const want2 = reference(dst.slice(), inside, 'sum');
        expect(arena.add(dst, inside)).toBe(true);
        expect(dst).toEqual(want2);
      }
    }
    // Not its memory, or not a summable type: nothing done.
    expect(arena.add(new Float32Array(8), new Float32Array(8))).toBe(false);
    expect(arena.add(new Float32Array(arena.buffer, 0, 8), new Float64Array(8) as never)).toBe(false);
  });

  it('addSimd leaves short arrays and other types to the caller', () => {
    expect(addSimd(new Float32Array(10), new Float32Array(10))).toBe(false);
    expect(addSimd(new Float32Array(1000), new Float64Array(1000) as never)).toBe(false);
  });
});
