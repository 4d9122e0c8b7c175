// Quickstart for @hpdl/core: define, train, save and reload a small CNN in one process.
// Run from the repository root after `npm install`:  node packages/core/examples/quickstart.mjs
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as h from '@hpdl/core';

await h.initBackend(); // the best available: tensorflow, then wasm, then cpu (or HPDL_BACKEND)
console.log(`backend: ${h.describeBackend()}`);

// A toy task with real structure: 8x8 images with a bright patch in one of four quadrants.
function batch(n, gen) {
  const x = new Float32Array(n * 64);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const q = gen.int(4);
    y[i] = q;
    const r0 = (q >> 1) * 4 + gen.int(2);
    const c0 = (q & 1) * 4 + gen.int(2);
    for (let k = 0; k < 64; k++) x[i * 64 + k] = 0.3 * gen.normal();
    for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) x[i * 64 + (r0 + r) * 8 + c0 + c] += 2;
  }
  return { x: h.fromTf(h.tf.tensor(x, [n, 8, 8, 1])), y: h.fromTf(h.tf.tensor(y, [n], 'int32')) };
}

const cnn = () =>
  new h.Sequential(
    new h.Conv2d(1, 8, 3, { padding: 'same' }), // NHWC input, HWIO filters
    new h.ReLU(),
    new h.MaxPool2d(2),
    new h.Flatten(),
    new h.Linear(4 * 4 * 8, 4),
  );

h.manualSeed(0); // same seed, same parameters, in any process
const model = cnn();
const opt = new h.Adam(model.parameters(), { lr: 0.01 });
const gen = new h.Generator(1);

for (let step = 1; step <= 100; step++) {
  const { x, y } = batch(32, gen);
  // tidy frees every tensor made inside the step; the graph for backward keeps what it needs.
  const loss = h.tidy(() => {
    opt.zeroGrad();
    const l = h.crossEntropy(model.forward(x), y);
    l.backward();
    opt.step();
    return l.item();
  });
  x.dispose();
  y.dispose();
  if (step % 25 === 0) console.log(`step ${step}  loss ${loss.toFixed(4)}  live tensors ${h.liveTensors()}`);
}

const test = batch(256, new h.Generator(2));
model.eval();
const logits = h.noGrad(() => model.forward(test.x));
const pred = h.tf.argMax(logits.data, -1).dataSync();
const truth = test.y.dataSync();
const acc = pred.reduce((a, p, i) => a + (p === truth[i] ? 1 : 0), 0) / truth.length;
console.log(`test accuracy ${(acc * 100).toFixed(1)}%`);

const path = join(mkdtempSync(join(tmpdir(), 'hpdl-')), 'model.safetensors');
h.saveCheckpoint(path, { model, optimizer: opt, extra: { step: 100 } });
h.manualSeed(99);
const restored = cnn();
const extra = h.loadCheckpoint(path, { model: restored });
const same = h.noGrad(() => restored.eval().forward(test.x)).dataSync().every((v, i) => v === logits.dataSync()[i]);
console.log(`saved to ${path}; reloaded at step ${extra.step}; same outputs: ${same}`);
if (!(acc > 0.9 && same)) process.exit(1);
