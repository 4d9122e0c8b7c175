// Training-step benchmark of @hpdl/core against @tensorflow/tfjs-layers and the backend's own kernels.
// Run: npm run bench -w @hpdl/core   (options: --quick for fewer repetitions)
import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import * as tfl from '@tensorflow/tfjs-layers';
import * as h from '../src/index.js';

const quick = process.argv.includes('--quick');
const REPS = quick ? 3 : 7;

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

/** Waits for a result and frees it. (Not tf.tidy(() => t.dataSync()): tf.tidy walks every element of a returned typed array.) */
function sync(t: TF.Tensor): void {
  t.dataSync();
  t.dispose();
}

const gf = (flops: number, s: number) => flops / s / 1e9;
const row = (cells: (string | number)[]) => console.log(cells.map((c, i) => String(c).padEnd(i === 0 ? 44 : 14)).join(''));
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

function labels(n: number, classes: number, gen: h.Generator): Int32Array {
  return Int32Array.from({ length: n }, () => gen.int(classes));
}

async function mlp() {
  const B = 128;
  const dims = [784, 512, 512, 10];
  const gen = new h.Generator(1);
  const xv = h.randn([B, 784], 1, 0, gen);
  const yv = labels(B, 10, gen);
  const y = h.fromTf(tf.tensor(yv, [B], 'int32'));

  // Ours
  h.manualSeed(1);
  const model = new h.Sequential(new h.Linear(784, 512), new h.ReLU(), new h.Linear(512, 512), new h.ReLU(), new h.Linear(512, 10));
  const ours = await timeIt(sgdStep(model, xv, y));

  // tfjs-layers, same model, backend and batch
  const lm = tfl.sequential({
    layers: [
      tfl.layers.dense({ units: 512, activation: 'relu', inputShape: [784] }),
      tfl.layers.dense({ units: 512, activation: 'relu' }),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
  // tfjs-layers' usual classification setup: softmax output, one-hot targets.
  lm.compile({ optimizer: tf.train.sgd(0.01), loss: 'categoricalCrossentropy' });
  const ly = tf.cast(tf.oneHot(tf.tensor1d(yv, 'int32'), 10), 'float32');
  const theirs = await timeIt(async () => lm.trainOnBatch(xv.data, ly));

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
  const plain = await timeIt(() => {
    for (const [a, b] of mats) sync(tf.matMul(a, b));
  });
  const plainFlops = shapes.reduce((s, [m, k, n]) => s + 2 * m * k * n, 0);

  row(['MLP 784-512-512-10, batch 128, SGD', 'ms/step', 'GFLOP/s']);
  row(['  hpdl', (ours * 1e3).toFixed(2), gf(flops, ours).toFixed(1)]);
  row(['  tfjs-layers trainOnBatch', (theirs * 1e3).toFixed(2), gf(flops, theirs).toFixed(1)]);
  row(['  plain matMul, same shapes', (plain * 1e3).toFixed(2), gf(plainFlops, plain).toFixed(1)]);
  target('mlp-step-vs-layers', ours / theirs, '<=', 0.5);
  target('mlp-step-gflops-vs-matmul', gf(flops, ours) / gf(plainFlops, plain), '>=', 0.5);
  lm.dispose();
  model.dispose();
}

async function cnn() {
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
  const ours = await timeIt(sgdStep(model, xv, y));
  const conv1 = 2 * B * 28 * 28 * 9 * 1 * 32;
  const conv2 = 2 * B * 14 * 14 * 9 * 32 * 64;
  const lin = 2 * B * 3136 * 10;
  // forward + filter gradient for conv1 (its input needs no gradient), forward + both gradients for the rest
  const flops = 2 * conv1 + 3 * conv2 + 3 * lin;

  const x1 = tf.randomNormal([B, 28, 28, 1]) as TF.Tensor4D;
  const w1 = tf.randomNormal([3, 3, 1, 32]) as TF.Tensor4D;
  const x2 = tf.randomNormal([B, 14, 14, 32]) as TF.Tensor4D;
  const w2 = tf.randomNormal([3, 3, 32, 64]) as TF.Tensor4D;
  const fwd = await timeIt(() => {
    sync(tf.conv2d(x1, w1, 1, 'same'));
    sync(tf.conv2d(x2, w2, 1, 'same'));
  });
  const fwdFlops = conv1 + conv2;

  row(['CNN conv32-pool-conv64-pool-linear, batch 64', 'ms/step', 'GFLOP/s']);
  row(['  hpdl', (ours * 1e3).toFixed(2), gf(flops, ours).toFixed(1)]);
  row(['  forward conv2d of its layers', (fwd * 1e3).toFixed(2), gf(fwdFlops, fwd).toFixed(1)]);
  target('cnn-step-gflops-vs-conv-fwd', gf(flops, ours) / gf(fwdFlops, fwd), '>=', 0.5);

  // For information: tfjs-layers on the same CNN, on this backend and on cpu.
  const layersCnn = () => {
    const m = tfl.sequential({
      layers: [
        tfl.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', inputShape: [28, 28, 1] }),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.conv2d({ filters: 64, kernelSize: 3, padding: 'same', activation: 'relu' }),
        tfl.layers.maxPooling2d({ poolSize: 2 }),
        tfl.layers.flatten(),
        tfl.layers.dense({ units: 10, activation: 'softmax' }),
      ],
    });
    m.compile({ optimizer: tf.train.sgd(0.01), loss: 'categoricalCrossentropy' });
    return m;
  };
  const ly = tf.cast(tf.oneHot(tf.tensor1d(yv, 'int32'), 10), 'float32');
  for (const backend of [h.backendName(), 'cpu'] as const) {
    await h.initBackend(backend);
    const m = layersCnn();
    try {
      const t = await timeIt(async () => m.trainOnBatch(tf.clone(xv.data), ly), backend === 'cpu' ? 1 : 2, backend === 'cpu' ? 0 : 1);
      row([`  tfjs-layers trainOnBatch on ${backend}`, (t * 1e3).toFixed(0), gf(flops, t).toFixed(2)]);
    } catch (e) {
      row([`  tfjs-layers trainOnBatch on ${backend}`, 'fails:', (e as Error).message.split('\n')[0]!.slice(0, 80)]);
    }
    m.dispose();
  }
  model.dispose();
}

const backend = await h.initBackend();
console.log(`# @hpdl/core training-step benchmark, backend ${h.describeBackend()}, ${REPS} timed repetitions (median)`);
await mlp();
await h.initBackend(backend);
await cnn();
console.log('');
for (const t of targets) console.log(t);
