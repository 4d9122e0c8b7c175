// Writing a schedule from scratch: "eager 1F1B", which runs one more warm-up forward than 1F1B on
// every rank but the last, so that a stage has the next activation in hand while a gradient is
// still on the wire. The table is validated, simulated against 1F1B with a communication latency,
// registered by name, and used to train a model on two processes.
//
//   node packages/pipeline/examples/custom-schedule.mjs
import { fileURLToPath } from 'node:url';
import { detectJob, init, launch } from '@hpdl/comm';
import { Generator, Linear, ReLU, SGD, Sequential, initBackend, mseLoss, randn, tensor } from '@hpdl/core';
import {
  B,
  F,
  Pipeline,
  formatTable,
  getSchedule,
  parseTable,
  registerSchedule,
  simulate,
  validate,
  withCommunication,
} from '@hpdl/pipeline';

/** A schedule is a function from { ranks, microbatches } to a table: per rank, its actions in order. */
function eager1F1B({ ranks: p, microbatches: m }) {
  const actions = [];
  for (let r = 0; r < p; r++) {
    const warm = Math.min(r === p - 1 ? 0 : p - r, m); // 1F1B warms up with p - r - 1
    const list = [];
    for (let i = 0; i < warm; i++) list.push(F(r, i));
    for (let i = 0; i < m - warm; i++) list.push(F(r, warm + i), B(r, i));
    for (let i = m - warm; i < m; i++) list.push(B(r, i));
    actions.push(list);
  }
  // Stage s lives on rank s; one stage per rank.
  return { name: 'eager-1f1b', ranks: p, stages: p, microbatches: m, placement: actions.map((_, r) => r), actions };
}

if (detectJob().source === 'single process') {
  // 1. The table, with the sends and receives added, in the compact text form.
  const table = withCommunication(eager1F1B({ ranks: 3, microbatches: 5 }));
  validate(table);
  console.log(formatTable(table));

  // 2. What it buys: simulated with F = 1, B = 2 and a latency of 0.5 per message.
  for (const [name, t] of [['1f1b', withCommunication(getSchedule('1f1b')({ ranks: 4, microbatches: 8 }))], ['eager-1f1b', withCommunication(eager1F1B({ ranks: 4, microbatches: 8 }))]]) {
    const s = simulate(t, { F: 1, B: 2, W: 0, latency: 0.5 });
    console.log(`${name.padEnd(10)} p=4 m=8: makespan ${s.makespan.toFixed(1)}, bubble ${(100 * s.bubble).toFixed(1)}%, peak stash ${s.peakStash.join(',')}`);
  }

  // 3. The validator catches a broken table and shows where.
  try {
    validate(parseTable('rank 0: 0F0 0RECV_B0 0SEND_F0 0B0\nrank 1: 1RECV_F0 1F0 1B0 1SEND_B0', { name: 'broken' }));
  } catch (e) {
    console.log(`validator: ${e.message}`);
  }

  // 4. Train with it on two processes.
  const r = await launch({ nprocs: 2, script: fileURLToPath(import.meta.url) });
  process.exit(r.code);
}

// On each rank: register the schedule by name (or pass the function itself as `schedule`).
registerSchedule('eager-1f1b', eager1F1B);
await initBackend();
const world = await init();
const pipe = await Pipeline.create({
  comm: world,
  model: () => new Sequential(new Linear(4, 32), new ReLU(), new Linear(32, 32), new ReLU(), new Linear(32, 1)),
  seed: 0,
  schedule: 'eager-1f1b',
  microbatches: 4,
  loss: mseLoss,
  optimizer: (ps) => new SGD(ps, { lr: 0.05, momentum: 0.9 }),
});
// Regression of y = sum(sin(x)).
const gen = new Generator(3);
let first = 0;
let last = 0;
for (let step = 1; step <= 150; step++) {
  const input = randn([64, 4], 1, 0, gen);
  const target = sinSum(input);
  const { loss } = await pipe.step({ input, target });
  input.dispose();
  target.dispose();
  if (step === 1) first = loss;
  last = loss;
}
if (world.rank === 0) console.log(`eager-1f1b trained: loss ${first.toFixed(3)} -> ${last.toFixed(4)}`);
await world.close();

/** Targets: the sum of the sines of each row's inputs, as [n, 1]. */
function sinSum(x) {
  const v = x.dataSync();
  const out = new Float32Array(x.shape[0]);
  for (let i = 0; i < out.length; i++) for (let j = 0; j < 4; j++) out[i] += Math.sin(v[i * 4 + j]);
  return tensor(out, [out.length, 1]);
}
