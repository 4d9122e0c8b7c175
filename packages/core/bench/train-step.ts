// Training-step benchmark of @hpdl/core against @tensorflow/tfjs-layers and the backend's own kernels,
// on wasm and, where it is available, on the native tensorflow backend (in the same run).
// Run: npm run bench -w @hpdl/core   (options: --quick for fewer repetitions)
import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import * as tfl from '@tensorflow/tfjs-layers';
import * as h from '../src/index.js';

const quick = process.argv.includes('--quick');
const REPS = quick ? 3 : 7;
/** Rounds that alternate the sides of a comparison: this machine's speed drifts within a run. */
const ROUNDS = quick ? 1 : 3;

/** Median seconds per call of `f` after warm-up; `f` must finish its work (download a value). */
async function timeIt(f: () => unknown | Promise<unknown>, reps = REPS, warm = 2): Promise<number> {
  for (let i = 0; i < warm; i++) await f();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/**
 * Each side's best median over `ROUNDS` rounds in which the sides alternate, so that a slow minute
 * of the machine does not decide a ratio.
 */
async function alternate(sides: (() => unknown | Promise<unknown>)[]): Promise<number[]> {
  const best = sides.map(() => Infinity);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < sides.length; i++) best[i] = Math.min(best[i]!, await timeIt(sides[i]!));
  }
  return best;
}

/**
 * Waits for a result and frees it, downloading one element only: a reference kernel's time must
 * not include copying its whole output out of the backend (9.6 MB for the CNN's convolutions),
 * which a training step never does.
 */
function sync(t: TF.Tensor): void {
  const one = tf.slice(t, t.shape.map(() => 0), t.shape.map(() => 1));
  one.dataSync();
  one.dispose();
  t.dispose();
}

const gf = (flops: number, s: number) => flops / s / 1e9;
const row = (cells: (string | number)[]) => console.log(cells.map((c, i) => String(c).padEnd(i === 0 ? 48 : 14)).join(''));
const targets: string[] = [];
function target(name: string, measured: number, op: '<=' | '>=', limit: number) {
  const ok = op === '<=' ? measured <= limit : measured >= limit;
  targets.push(`target ${name} ${measured.toFixed(2)} ${op} ${limit.toFixed(2)} ${ok ? 'ok' : 'MISS'}`);
}

/** One SGD training step of `model` on a fixed batch, as a function to time. */
function sgdStep(model: h.Module, x: h.Tensor, y: h.Tensor): () => number {
  const opt = new h.SGD(model.parameters(), { lr: 0.01 });
  return () =>
    h.tidy(() => {
      opt.zeroGrad();
      const loss = h.crossEntropy(model.forward(x), y);
      loss.backward();
      opt.step();
      return loss.item();
    });
}

/** tfjs-layers' usual classification setup: softmax output, categorical cross-entropy on one-hot targets. */
function layersStep(m: tfl.Sequential, x: TF.Tensor, labels: Int32Array, classes: number): () => Promise<unknown> {
  m.compile({ optimizer: tf.train.sgd(0.01), loss: 'categoricalCrossentropy' });
  const y = tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), classes), 'float32');
  return async () => m.trainOnBatch(x, y);
}

function labels(n: number, classes: number, gen: h.Generator): Int32Array {
  return Int32Array.from({ length: n }, () => gen.int(classes));
}

/** Targets of one backend: suffix '' on wasm (the first targets set), '-tf' on tensorflow. */
interface Limits {
  suffix: string;
  mlpVsLayers: number | null;
  mlpVsMatmul: number | null;
  cnnVsLayers: number | null;
  cnnVsConv: number;
  gptVsMatmul: number | null;
  checkpoint: boolean;
}

async function mlp(lim: Limits) {
  const B = 128;
  const dims = [784, 512, 512, 10];
  const gen = new h.Generator(1);
  const xv = h.randn([B, 784], 1, 0, gen);
  const yv = labels(B, 10, gen);
  const y = h.fromTf(tf.tensor(yv, [B], 'int32'));

  h.manualSeed(1);
  const model = new h.Sequential(new h.Linear(784, 512), new h.ReLU(), new h.Linear(512, 512), new h.ReLU(), new h.Linear(512, 10));
  const lm = tfl.sequential({
    layers: [
      tfl.layers.dense({ units: 512, activation: 'relu', inputShape: [784] }),
      tfl.layers.dense({ units: 512, activation: 'relu' }),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });

  // FLOPs the step must do: forward, weight gradients, and input gradients of all but the first layer.
  let flops = 0;
  for (let i = 0; i < 3; i++) flops += 2 * B * dims[i]! * dims[i + 1]! * (i === 0 ? 2 : 3);
  // The backend's plain matmul on the same shapes (operands already laid out, no transpose flags).
  const shapes: [number, number, number][] = [];
  for (let i = 0; i < 3; i++) {
    const [k, n] = [dims[i]!, dims[i + 1]!];
    shapes.push([B, k, n]); // forward
    shapes.push([k, B, n]); // weight gradient
    if (i > 0) shapes.push([B, n, k]); // input gradient
  }
  const mats = shapes.map(([m, k, n]) => [tf.randomNormal([m, k]), tf.randomNormal([k, n])] as const);
  const plainFlops = shapes.reduce((s, [m, k, n]) => s + 2 * m * k * n, 0);
  const plain = () => {
    const outs = mats.map(([a, b]) => tf.matMul(a, b));
    outs.forEach(sync);
  };

  const [ours, theirs, mm] = await alternate([sgdStep(model, xv, y), layersStep(lm, xv.data, yv, 10), plain]);
  row([`MLP 784-512-512-10, batch 128, SGD (${h.backendName()})`, 'ms/step', 'GFLOP/s']);
  row(['  hpdl', (ours! * 1e3).toFixed(2), gf(flops, ours!).toFixed(1)]);
  row(['  tfjs-layers trainOnBatch', (theirs! * 1e3).toFixed(2), gf(flops, theirs!).toFixed(1)]);
  row(['  plain matMul, same shapes', (mm! * 1e3).toFixed(2), gf(plainFlops, mm!).toFixed(1)]);
  if (lim.mlpVsLayers != null) target(`mlp-step-vs-layers${lim.suffix}`, ours! / theirs!, '<=', lim.mlpVsLayers);
  if (lim.mlpVsMatmul != null) target(`mlp-step-gflops-vs-matmul${lim.suffix}`, gf(flops, ours!) / gf(plainFlops, mm!), '>=', lim.mlpVsMatmul);
  lm.dispose();
  model.dispose();
  mats.forEach(([a, b]) => (a.dispose(), b.dispose()));
}

function layersCnn(): tfl.Sequential {
  return tfl.sequential({
    layers: [
      tfl.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', inputShape: [28, 28, 1] }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
}

async function cnn(lim: Limits) {
  const B = 64;
  const gen = new h.Generator(2);
  const xv = h.randn([B, 28, 28, 1], 1, 0, gen);
  const yv = labels(B, 10, gen);
  const y = h.fromTf(tf.tensor(yv, [B], 'int32'));
  h.manualSeed(2);
  const model = new h.Sequential(
    new h.Conv2d(1, 32, 3, { padding: 'same' }),
    new h.ReLU(),
    new h.MaxPool2d(2),
    new h.Conv2d(32, 64, 3, { padding: 'same' }),
    new h.ReLU(),
    new h.MaxPool2d(2),
    new h.Flatten(),
    new h.Linear(7 * 7 * 64, 10),
  );
  const conv1 = 2 * B * 28 * 28 * 9 * 1 * 32;
  const conv2 = 2 * B * 14 * 14 * 9 * 32 * 64;
  const lin = 2 * B * 3136 * 10;
  // forward + filter gradient for conv1 (its input needs no gradient), forward + both gradients for the rest
  const flops = 2 * conv1 + 3 * conv2 + 3 * lin;

  const x1 = tf.randomNormal([B, 28, 28, 1]) as TF.Tensor4D;
  const w1 = tf.randomNormal([3, 3, 1, 32]) as TF.Tensor4D;
  const x2 = tf.randomNormal([B, 14, 14, 32]) as TF.Tensor4D;
  const w2 = tf.randomNormal([3, 3, 32, 64]) as TF.Tensor4D;
  const fwdConv = () => {
    sync(tf.conv2d(x1, w1, 1, 'same'));
    sync(tf.conv2d(x2, w2, 1, 'same'));
  };
  const fwdFlops = conv1 + conv2;

  // tfjs-layers cannot train the CNN on wasm (no Conv2DBackpropFilter kernel there).
  let lm: tfl.Sequential | null = layersCnn();
  let layersFailure: string | null = null;
  const theirStep = layersStep(lm, xv.data, yv, 10);
  try {
    await theirStep();
  } catch (e) {
    layersFailure = (e as Error).message.split('\n')[0]!.slice(0, 80);
    lm.dispose();
    lm = null;
  }
  const sides = lm ? [sgdStep(model, xv, y), fwdConv, theirStep] : [sgdStep(model, xv, y), fwdConv];
  const [ours, fwd, theirs] = await alternate(sides);

  row([`CNN conv32-pool-conv64-pool-linear, batch 64 (${h.backendName()})`, 'ms/step', 'GFLOP/s']);
  row(['  hpdl', (ours! * 1e3).toFixed(2), gf(flops, ours!).toFixed(1)]);
  row(['  forward conv2d of its layers', (fwd! * 1e3).toFixed(2), gf(fwdFlops, fwd!).toFixed(1)]);
  if (theirs != null) row(['  tfjs-layers trainOnBatch', (theirs * 1e3).toFixed(2), gf(flops, theirs).toFixed(1)]);
  else row(['  tfjs-layers trainOnBatch', 'fails:', layersFailure ?? '']);
  target(`cnn-step-gflops-vs-conv-fwd${lim.suffix}`, gf(flops, ours!) / gf(fwdFlops, fwd!), '>=', lim.cnnVsConv);
  if (lim.cnnVsLayers != null && theirs != null) target(`cnn-step-vs-layers${lim.suffix}`, ours! / theirs, '<=', lim.cnnVsLayers);
  lm?.dispose();
  model.dispose();
  [x1, w1, x2, w2].forEach((t) => t.dispose());
}

/** The products of a linear layer's step: forward, input gradient (unless the first), weight gradient, laid out. */
function linearShapes(m: number, k: number, n: number, inputGrad = true): [number, number, number][] {
  return inputGrad ? [[m, k, n], [m, n, k], [k, m, n]] : [[m, k, n], [k, m, n]];
}

/** The GPT benchmark's model (4 blocks, width 128, 4 heads, T 64, batch 16, vocabulary 96). */
const GPT = { vocab: 96, dim: 128, heads: 4, layers: 4, maxLen: 64, batch: 16 };

async function gptStep(lim: Limits) {
  const { vocab, dim, heads, layers, maxLen: t, batch: b } = GPT;
  h.manualSeed(3);
  const model = new h.Sequential(...h.gpt({ vocab, dim, heads, layers, maxLen: t }));
  const gen = new h.Generator(4);
  const ids = h.randint(vocab, [b, t], gen);
  const next = h.randint(vocab, [b, t], gen);
  const ours = sgdStep(model, ids, next);
  // Every product the step must do, as plain (batched) matMuls with operands already laid out.
  const rows = b * t;
  const d = dim / heads;
  const bh = b * heads;
  const shapes: { batch: number; m: number; k: number; n: number }[] = [];
  const lin = (k: number, n: number) => linearShapes(rows, k, n).forEach(([m, kk, nn]) => shapes.push({ batch: 1, m, k: kk, n: nn }));
  for (let i = 0; i < layers; i++) {
    lin(dim, 3 * dim);
    lin(dim, dim);
    lin(dim, 4 * dim);
    lin(4 * dim, dim);
    // scores q k^T and P v forward; dV, dP, dQ, dK backward.
    for (const [m, k, n] of [[t, d, t], [t, t, d], [t, t, d], [t, d, t], [t, t, d], [t, t, d]] as const) shapes.push({ batch: bh, m, k, n });
  }
  lin(dim, vocab); // the tied head
  const mats = shapes.map((s) => [tf.randomNormal(s.batch > 1 ? [s.batch, s.m, s.k] : [s.m, s.k]), tf.randomNormal(s.batch > 1 ? [s.batch, s.k, s.n] : [s.k, s.n])] as const);
  const plain = () => mats.forEach(([x, y]) => sync(tf.matMul(x, y)));
  const flops = shapes.reduce((a, s) => a + 2 * s.batch * s.m * s.k * s.n, 0);
  const [ourT, plainT] = await alternate([ours, plain]);
  row([`GPT ${layers}x${dim}, ${heads} heads, T ${t}, batch ${b}, vocab ${vocab} (${h.backendName()})`, 'ms/step', 'GFLOP/s']);
  row(['  hpdl (SGD step)', (ourT! * 1e3).toFixed(1), gf(flops, ourT!).toFixed(1)]);
  row(['  plain matMul, same shapes', (plainT! * 1e3).toFixed(1), gf(flops, plainT!).toFixed(1)]);
  if (lim.gptVsMatmul != null) target(`gpt-step-gflops-vs-matmul${lim.suffix}`, gf(flops, ourT!) / gf(flops, plainT!), '>=', lim.gptVsMatmul);
  mats.forEach(([x, y]) => (x.dispose(), y.dispose()));
  [ids, next].forEach((x) => x.dispose());
  model.dispose();
}

/** Peak bytes and step time of an 8-block model with every block checkpointed, against without. */
async function checkpointing(lim: Limits) {
  const { vocab, dim, heads, maxLen: t, batch: b } = GPT;
  h.manualSeed(5);
  const layers = h.gpt({ vocab, dim, heads, layers: 8, maxLen: t });
  const params = new h.Sequential(...layers).parameters();
  const gen = new h.Generator(6);
  const ids = h.randint(vocab, [b, t], gen);
  const next = h.randint(vocab, [b, t], gen);
  const forward = (ck: boolean) => layers.reduce((x, l) => (ck && l instanceof h.TransformerBlock ? h.checkpoint((y) => l.forward(y), x) : l.forward(x)), ids);
  const step = (ck: boolean) => () =>
    h.tidy(() => {
      for (const p of params) {
        p.grad?.dispose();
        p.grad = null;
      }
      const l = h.crossEntropy(forward(ck), next);
      l.backward();
      return l.item();
    });
  const peak = async (ck: boolean) => {
    step(ck)(); // gradients allocated once, as in training
    const start = tf.memory().numBytes;
    const info = await tf.profile(() => void step(ck)());
    return info.peakBytes - start;
  };
  const [plainBytes, ckBytes] = [await peak(false), await peak(true)];
  const [plainT, ckT] = await alternate([step(false), step(true)]);
  row([`8 blocks, every block checkpointed (${h.backendName()})`, 'peak MB', 'ms/step']);
  row(['  without checkpointing', (plainBytes / 2 ** 20).toFixed(1), (plainT! * 1e3).toFixed(1)]);
  row(['  with checkpointing', (ckBytes / 2 ** 20).toFixed(1), (ckT! * 1e3).toFixed(1)]);
  if (lim.checkpoint) {
    target(`checkpoint-peak-bytes${lim.suffix}`, ckBytes / plainBytes, '<=', 0.5);
    target(`checkpoint-step-time${lim.suffix}`, ckT! / plainT!, '<=', 1.45);
  }
  [ids, next].forEach((x) => x.dispose());
  layers.forEach((l) => l.dispose());
}

async function hasTensorflow(): Promise<boolean> {
  try {
    await h.initBackend('tensorflow');
    return true;
  } catch {
    return false;
  }
}

const WASM: Limits = { suffix: '', mlpVsLayers: 0.5, mlpVsMatmul: 0.5, cnnVsLayers: null, cnnVsConv: 0.5, gptVsMatmul: 0.5, checkpoint: true };
const TENSORFLOW: Limits = { suffix: '-tf', mlpVsLayers: 0.8, mlpVsMatmul: null, cnnVsLayers: 0.8, cnnVsConv: 0.5, gptVsMatmul: null, checkpoint: false };

const runs: [h.BackendName, Limits][] = [['wasm', WASM]];
if (await hasTensorflow()) runs.push(['tensorflow', TENSORFLOW]);
console.log(`# @hpdl/core training-step benchmark: ${REPS} timed repetitions (median), best of ${ROUNDS} alternating round(s)`);
for (const [backend, lim] of runs) {
  await h.initBackend(backend);
  console.log(`\n## backend ${h.describeBackend()}`);
  await mlp(lim);
  await cnn(lim);
  await gptStep(lim);
  await checkpointing(lim);
}
if (runs.length === 1) console.log('\n(the tensorflow backend is not available here: npm run setup:tensorflow adds it and its targets)');
console.log('');
for (const t of targets) console.log(t);
