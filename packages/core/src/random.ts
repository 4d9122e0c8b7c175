import { tf } from './tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { Tensor } from './tensor.js';

/**
 * A seeded pseudo-random generator (xoshiro128**, seeded through splitmix32). The same seed gives
 * the same sequence in every process and on every backend, which is what makes "every rank builds
 * the same model from the same seed" hold.
 */
export class Generator {
  private s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Restarts the sequence from a seed. */
  seed(seed: number): this {
    let z = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) >>> 0;
      let t = z;
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b) >>> 0;
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (t ^ (t >>> 16)) >>> 0;
    }
    this.spare = null;
    return this;
  }

  /** The full state, to save and restore (checkpoints). */
  getState(): number[] {
    return [...this.s, this.spare ?? Number.NaN];
  }
  /** Restores a state returned by getState. */
  setState(state: number[]): void {
    for (let i = 0; i < 4; i++) this.s[i] = state[i]! >>> 0;
    this.spare = state[4] == null || Number.isNaN(state[4]) ? null : state[4];
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** A uniform number in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** A standard normal number (Box-Muller). */
  normal(): number {
    if (this.spare != null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

let global = new Generator(0);

/**
 * Seeds drawn by random operations (dropout) inside a `checkpoint` are recorded on its first
 * forward pass and replayed when backward recomputes it, so the recomputation equals the original.
 */
export class SeedTape {
  private readonly seeds: number[] = [];
  private next = 0;
  constructor(readonly mode: 'record' | 'replay' = 'record') {}
  /** A tape that replays what this one recorded. */
  replay(): SeedTape {
    const t = new SeedTape('replay');
    t.seeds.push(...this.seeds);
    return t;
  }
  push(seed: number): void {
    this.seeds.push(seed);
  }
  take(): number {
    if (this.next >= this.seeds.length) {
      throw new Error(`a recomputed forward drew ${this.next + 1} random seeds, the original drew ${this.seeds.length}: the function given to checkpoint must draw the same randomness each time`);
    }
    return this.seeds[this.next++]!;
  }
}

const tapes: SeedTape[] = [];

/** Runs `fn` with `tape` recording (or replaying) the seeds random operations draw. */
export function withSeedTape<T>(tape: SeedTape, fn: () => T): T {
  tapes.push(tape);
  try {
    return fn();
  } finally {
    tapes.pop();
  }
}

/**
 * A seed for one random operation: from `gen`, or from the innermost replaying tape; every
 * recording tape above that one keeps it.
 */
export function drawSeed(gen: Generator): number {
  let i = tapes.length - 1;
  while (i >= 0 && tapes[i]!.mode === 'record') i--;
  const seed = i >= 0 ? tapes[i]!.take() : gen.nextUint32();
  for (let j = i + 1; j < tapes.length; j++) tapes[j]!.push(seed);
  return seed;
}

/** Seeds the global generator that initialisers, dropout and shuffles draw from. */
export function manualSeed(seed: number): void {
  global = new Generator(seed);
}

/** The global generator. */
export function defaultGenerator(): Generator {
  return global;
}

function count(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Normal samples with the given mean and standard deviation. */
export function randn(shape: number[], std = 1, mean = 0, gen: Generator = global): Tensor {
  const v = new Float32Array(count(shape));
  for (let i = 0; i < v.length; i++) v[i] = mean + std * gen.normal();
  return new Tensor(tf.tensor(v, shape, 'float32'));
}

/** Uniform samples in [low, high). */
export function rand(shape: number[], low = 0, high = 1, gen: Generator = global): Tensor {
  const v = new Float32Array(count(shape));
  for (let i = 0; i < v.length; i++) v[i] = low + (high - low) * gen.uniform();
  return new Tensor(tf.tensor(v, shape, 'float32'));
}

/** Uniform integers in [0, n) as int32. */
export function randint(n: number, shape: number[], gen: Generator = global): Tensor {
  const v = new Int32Array(count(shape));
  for (let i = 0; i < v.length; i++) v[i] = gen.int(n);
  return new Tensor(tf.tensor(v, shape, 'int32'));
}

/** A random permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, gen: Generator = global): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = gen.int(i + 1);
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}
