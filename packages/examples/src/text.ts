// What the character-level language models (char-RNN, GPT) share: Moby-Dick's text split into
// training and held-out parts, random windows of it, held-out bits per character, and sampling.
import { Generator, fromTf, tf, type Tensor } from '@hpdl/core';
import type { Pipeline } from '@hpdl/pipeline';
import { Vocabulary, loadMobyDick } from './data/moby.js';
import type { Options } from './job.js';

/** The text as ids, its training part and its held-out end. */
export interface TextData {
  vocab: Vocabulary;
  train: Int32Array;
  valid: Int32Array;
}

/** The options of a text job, checked: one line naming the bad one, else the data. */
export function loadText(o: Options, positiveInts: string[]): TextData {
  for (const k of positiveInts) {
    const n = Number(o[k]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be a positive integer, found ${o[k]}`);
  }
  const f = Number(o.validFraction);
  if (!(f > 0 && f < 0.5)) throw new Error(`--valid-fraction must be between 0 and 0.5, found ${o.validFraction}`);
  const text = loadMobyDick();
  const vocab = new Vocabulary(text, 5);
  const ids = vocab.encode(text);
  const cut = Math.floor(ids.length * (1 - f));
  return { vocab, train: ids.subarray(0, cut), valid: ids.subarray(cut) };
}

/** Windows of t + 1 characters of `src` at `starts`: inputs and next-character targets, [rows, t]. */
function windowsAt(src: Int32Array, starts: ArrayLike<number>, t: number): { input: Tensor; target: Tensor } {
  const rows = starts.length;
  const x = new Int32Array(rows * t);
  const y = new Int32Array(rows * t);
  for (let i = 0; i < rows; i++) {
    const s = starts[i]!;
    x.set(src.subarray(s, s + t), i * t);
    y.set(src.subarray(s + 1, s + t + 1), i * t);
  }
  return { input: fromTf(tf.tensor(x, [rows, t], 'int32')), target: fromTf(tf.tensor(y, [rows, t], 'int32')) };
}

/**
 * Batch `index` of `epoch`: random windows of the training text. Every replica draws the whole
 * batch's offsets (a deterministic function of the arguments) and keeps its share.
 */
export function textBatch(o: Options, d: TextData, t: number, epoch: number, index: number, replica: number): { input: Tensor; target: Tensor } {
  const gen = new Generator(o.seed * 1_000_003 + epoch * 100_003 + index);
  const per = o.batchSize / o.replicas;
  const all = Int32Array.from({ length: o.batchSize }, () => gen.int(d.train.length - t - 1));
  return windowsAt(d.train, all.subarray(replica * per, (replica + 1) * per), t);
}

/** Held-out bits per character: mean loss over fixed random windows of the held-out text. Collective. */
export async function heldOutBpc(pipe: Pipeline, o: Options, d: TextData, t: number, rounds = 6, rows = 64): Promise<number> {
  const gen = new Generator(424242);
  let nats = 0;
  for (let i = 0; i < rounds; i++) {
    const starts = Int32Array.from({ length: rows }, () => gen.int(d.valid.length - t - 1));
    const { input, target } = windowsAt(d.valid, starts, t);
    const { output, loss } = await pipe.predict({ input, target, microbatches: o.microbatches });
    output?.dispose();
    input.dispose();
    target.dispose();
    nats += loss;
  }
  return nats / rounds / Math.LN2;
}

function sampleFrom(logits: Float32Array, temperature: number, gen: Generator): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = Array.from(logits, (v) => Math.exp((v - max) / temperature));
  const sum = p.reduce((a, b) => a + b, 0);
  let u = gen.uniform() * sum;
  for (let i = 0; i < p.length; i++) if ((u -= p[i]!) <= 0) return i;
  return p.length - 1;
}

/**
 * Generates text one character at a time from "Call me Ishmael. ", each from the model's distribution
 * over the last `t` characters at `temperature`. Collective: the last stage samples, every rank learns it.
 */
export async function sampleText(pipe: Pipeline, o: Options, d: TextData, t: number): Promise<string> {
  const gen = new Generator(o.seed + 99);
  const temperature = Number(o.temperature);
  const ids = Array.from(d.vocab.encode('Call me Ishmael. '));
  pipe.eval();
  for (let i = 0; i < Number(o.sampleLength); i++) {
    const ctx = ids.slice(-t);
    const input = fromTf(tf.tensor(Int32Array.from(ctx), [1, ctx.length], 'int32'));
    const { output } = await pipe.predict({ input, microbatches: 1 });
    input.dispose();
    let next = 0;
    if (output) {
      const logits = tf.tidy(() => tf.slice(output.data, [0, ctx.length - 1, 0], [1, 1, d.vocab.size])).dataSync();
      output.dispose();
      next = sampleFrom(logits as Float32Array, temperature, gen);
    }
    ids.push((await pipe.fromLastStage(Int32Array.of(next)))[0]!);
  }
  pipe.train();
  return d.vocab.decode(ids);
}

/** The options text jobs share: [flags, description, default]. */
export const textOptions = (seqLen: string): [string, string, string][] => [
  ['--seq-len <n>', 'characters per training window', seqLen],
  ['--valid-fraction <x>', 'share of the text (its end) held out', '0.05'],
  ['--sample-length <n>', 'characters to generate at the end', '300'],
  ['--temperature <x>', 'sampling temperature', '0.7'],
];
