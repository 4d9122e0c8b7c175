import { tf } from '../src/tf.js';
import { describe, expect, it } from 'vitest';
import { permuteArray } from '../src/ops/permute.js';
import { Generator, initBackend } from '../src/index.js';

/** Every permutation of 0..n-1. */
function perms(n: number): number[][] {
  if (n === 1) return [[0]];
  return perms(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]));
}

describe('permuteArray', () => {
  it('equals tf.transpose for every permutation of ranks 1 to 5, with sizes 1 and 0 among the dimensions', async () => {
    await initBackend('cpu');
    const gen = new Generator(1);
    for (const shape of [[5], [3, 4], [2, 1, 3], [2, 3, 1, 4], [2, 3, 2, 1, 3], [2, 0, 3]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = Float32Array.from({ length: n }, () => gen.normal());
      for (const p of perms(shape.length)) {
        const ref = tf.transpose(tf.tensor(v, shape), p);
        expect(Array.from(permuteArray(v, shape, p)), `[${shape}] by [${p}]`).toEqual(Array.from(ref.dataSync()));
        ref.dispose();
      }
    }
  });

  it('keeps the element type', () => {
    const ints = permuteArray(Int32Array.of(1, 2, 3, 4, 5, 6), [2, 3], [1, 0]);
    expect(ints).toBeInstanceOf(Int32Array);
    expect(Array.from(ints)).toEqual([1, 4, 2, 5, 3, 6]);
  });
});
