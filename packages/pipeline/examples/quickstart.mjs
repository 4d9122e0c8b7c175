// A two-stage pipeline: a small CNN split across two processes, trained with 1F1B on 4
// micro-batches, with a merged timeline written at the end.
//
//   node packages/pipeline/examples/quickstart.mjs [--steps 60] [--out DIR]
//
// Run as is, it starts its own two ranks with the launcher; under `hpdl launch`, srun or mpirun it
// is one of the ranks.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { detectJob, init, launch } from '@hpdl/comm';
import { Adam, Conv2d, Flatten, Generator, Linear, MaxPool2d, ReLU, Sequential, crossEntropy, fromTf, initBackend, randn, tf } from '@hpdl/core';
import { Pipeline, gatherTrace, timelineSvg, toChromeTrace } from '@hpdl/pipeline';

const { values: args } = parseArgs({ options: { steps: { type: 'string', default: '60' }, out: { type: 'string', default: 'pipeline-quickstart' } } });

if (detectJob().source === 'single process') {
  // Not started by a launcher: start two ranks of this script.
  const r = await launch({ nprocs: 2, script: fileURLToPath(import.meta.url), args: process.argv.slice(2) });
  process.exit(r.code);
}

await initBackend();
const world = await init();

// Every rank builds the same model from the same seed and keeps its own stage.
const model = () =>
  new Sequential(
    new Conv2d(1, 8, 3, { padding: 'same' }), new ReLU(), new MaxPool2d(2),
    new Conv2d(8, 16, 3, { padding: 'same' }), new ReLU(), new MaxPool2d(2),
    new Flatten(), new Linear(16 * 4 * 4, 32), new ReLU(), new Linear(32, 2),
  );
const pipe = await Pipeline.create({
  comm: world,
  model,
  seed: 0,
  schedule: '1f1b',
  microbatches: 4,
  loss: crossEntropy,
  optimizer: (params) => new Adam(params, { lr: 3e-3 }),
  sampleInput: { shape: [1, 16, 16, 1] },
  trace: true,
});
if (world.rank === 0) console.log(`stages of ${pipe.counts.join(' and ')} layers; output shapes ${JSON.stringify(pipe.shapes)}`);

// The task: is the bright square in the left or the right half of a noisy 16x16 image?
const gen = new Generator(1);
function batch(n) {
  const noise = randn([n, 16, 16, 1], 0.3, 0, gen);
  const labels = new Int32Array(n);
  const img = new Float32Array(n * 256);
  for (let i = 0; i < n; i++) {
    labels[i] = gen.int(2);
    const x0 = labels[i] ? 9 + gen.int(4) : gen.int(4);
    const y0 = gen.int(12);
    for (let y = y0; y < y0 + 4; y++) for (let x = x0; x < x0 + 3; x++) img[i * 256 + y * 16 + x] = 1;
  }
  const input = fromTf(tf.add(noise.data, tf.tensor(img, [n, 16, 16, 1])));
  noise.dispose();
  return { input, target: fromTf(tf.tensor(labels, [n], 'int32')) };
}

const steps = Number(args.steps);
for (let s = 1; s <= steps; s++) {
  const b = batch(32); // every rank draws the same batch; each uses what its stages need
  const { loss } = await pipe.step(b);
  b.input.dispose();
  b.target.dispose();
  if (world.rank === 0 && (s % 10 === 0 || s === 1)) console.log(`step ${s}: loss ${loss.toFixed(4)}`);
}

// Accuracy on fresh data, forward only.
pipe.eval();
const test = batch(256);
const { output } = await pipe.predict({ input: test.input, microbatches: 4 });
if (output) {
  const pred = tf.argMax(output.data, 1).dataSync();
  const y = test.target.dataSync();
  let right = 0;
  for (let i = 0; i < y.length; i++) right += pred[i] === y[i] ? 1 : 0;
  console.log(`test accuracy ${((100 * right) / y.length).toFixed(1)}%`);
  output.dispose();
}

// One merged timeline of the last step for all ranks.
const events = await gatherTrace(world, pipe.takeTrace().filter((e) => e.step === steps - 1));
if (events) {
  mkdirSync(args.out, { recursive: true });
  writeFileSync(join(args.out, 'trace.json'), toChromeTrace(events));
  writeFileSync(join(args.out, 'timeline.svg'), timelineSvg(events, { title: '1F1B, 2 stages, 4 micro-batches' }));
  console.log(`trace written to ${join(args.out, 'trace.json')} (open in https://ui.perfetto.dev) and ${join(args.out, 'timeline.svg')}`);
}
await world.close();
