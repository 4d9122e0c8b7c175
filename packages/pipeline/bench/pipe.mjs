// The benchmark model as a pipeline over this job's ranks. Rank 0 prints ms per step and the trace's
// measured per-stage costs (for the simulator's bound).
import { init } from '@hpdl/comm';
import { SGD, crossEntropy, initBackend } from '@hpdl/core';
import { Pipeline, costsFromTrace, gatherTrace } from '@hpdl/pipeline';
import { batch, mlp } from './model.mjs';

const cfg = JSON.parse(process.argv[2]);
await initBackend(process.env.HPDL_BACKEND);
const world = await init();
const pipe = await Pipeline.create({
  comm: world,
  model: () => mlp(cfg),
  seed: 1,
  schedule: cfg.schedule,
  microbatches: cfg.m,
  stagesPerRank: cfg.v ?? 1,
  balance: 'params',
  loss: crossEntropy,
  optimizer: (ps) => new SGD(ps, { lr: 0.01 }),
  trace: true,
  batchWeightGradients: cfg.batchW,
});
const data = batch(cfg, 7);
const times = [];
for (let s = 0; s < cfg.warmup + cfg.steps; s++) {
  await world.barrier();
  const t0 = performance.now();
  await pipe.step({ input: pipe.isFirst ? data.input : undefined, target: pipe.isLast ? data.target : undefined });
  if (s >= cfg.warmup) times.push(performance.now() - t0);
}
const events = await gatherTrace(world, pipe.takeTrace().filter((e) => e.step >= cfg.warmup));
if (world.rank === 0) {
  const costs = costsFromTrace(events, pipe.numStages);
  const steps = cfg.steps;
  const busy = [...new Set(events.map((e) => e.rank))].sort().map((r) => events.filter((e) => e.rank === r && e.track === 'compute').reduce((a, e) => a + e.end - e.start, 0) / steps / 1000);
  const waits = [...new Set(events.map((e) => e.rank))].sort().map((r) => events.filter((e) => e.rank === r && e.track === 'comm').reduce((a, e) => a + e.end - e.start, 0) / steps / 1000);
  if (process.env.DUMP) { const st = events.filter((e) => e.step === cfg.warmup); const t0 = Math.min(...st.map((e) => e.start)); for (const r of [0, 1]) console.log(r, st.filter((e) => e.rank === r).map((e) => `${e.name}@${((e.start - t0) / 1000).toFixed(0)}+${((e.end - e.start) / 1000).toFixed(1)}`).join(' ')); }
  console.log(JSON.stringify({ times, costs, busyMs: busy, commMs: waits }));
}
await world.close();
