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

async function hasTensorflow(): Promise<boolean> {
  try {
    await h.initBackend('tensorflow');
    return true;
  } catch {
    return false;
  }
}

const WASM: Limits = { suffix: '', mlpVsLayers: 0.5, mlpVsMatmul: 0.5, cnnVsLayers: null, cnnVsConv: 0.5 };
const TENSORFLOW: Limits = { suffix: '-tf', mlpVsLayers: 0.8, mlpVsMatmul: null, cnnVsLayers: 0.8, cnnVsConv: 0.5 };

const runs: [h.BackendName, Limits][] = [['wasm', WASM]];
if (await hasTensorflow()) runs.push(['tensorflow', TENSORFLOW]);
console.log(`# @hpdl/core training-step benchmark: ${REPS} timed repetitions (median), best of ${ROUNDS} alternating round(s)`);
for (const [backend, lim] of runs) {
  await h.initBackend(backend);
  console.log(`\n## backend ${h.describeBackend()}`);
  await mlp(lim);
  await cnn(lim);
}
if (runs.length === 1) console.log('\n(the tensorflow backend is not available here: npm run setup:tensorflow adds it and its targets)');
console.log('');
for (const t of targets) console.log(t);
