// Pipeline throughput against the same model trained in one process, beside the schedule's bound.
//
//   node bench/pipeline.mjs [--ranks 2] [--m 8] [--schedule 1f1b] [--width 1024] [--depth 8]
//                           [--batch 512] [--steps 8] [--warmup 2] [--rounds 3] [--json out.json]
//
// For each p: `rounds` alternating runs of the one-process reference and the p-rank pipeline, each
// timing `steps` steps after `warmup`. Each side's time per step is the fastest of its timed steps:
// on a shared machine interference only ever slows a step down, so the fastest step is the best
// estimate of each side's own speed (medians are printed too). efficiency = speed-up / p; the bound is
// 1 - bubble of the schedule's table in the simulator (uniform stage costs; also with the per-stage
// costs measured in the run's trace).
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { launch } from '@hpdl/comm';
import { getSchedule, simulate, withCommunication } from '@hpdl/pipeline';
import { stepFlops } from './model.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const opts = new Command()
  .option('--ranks <list>', 'pipeline sizes, comma-separated', '2')
  .option('--m <n>', 'micro-batches', '8')
  .option('--schedule <name>', 'schedule', '1f1b')
  .option('--v <n>', 'stages per rank (interleaved)', '1')
  .option('--width <n>', 'hidden width', '1024')
  .option('--depth <n>', 'hidden layers', '8')
  .option('--batch <n>', 'batch size', '512')
  .option('--steps <n>', 'timed steps per run', '8')
  .option('--warmup <n>', 'untimed steps per run', '2')
  .option('--rounds <n>', 'alternating runs of each side', '3')
  .option('--json <file>', 'also write the results as JSON')
  .parse()
  .opts();
const num = (k) => Number(opts[k]);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function runSingle(cfg) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, 'single.mjs'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1))) : reject(new Error(`single.mjs exited with ${code}`))));
  });
}

async function runPipeline(p, cfg) {
  let line = '';
  const r = await launch({ nprocs: p, script: join(here, 'pipe.mjs'), args: [JSON.stringify(cfg)], out: (l) => (l.includes('"times"') ? (line = l.replace(/^\[\s*\d+\] /, '')) : undefined), err: (l) => console.error(l) });
  if (r.code !== 0) throw new Error(`pipeline run at p=${p} failed (rank ${r.firstFailure?.rank})`);
  return JSON.parse(line);
}

const base = { width: num('width'), depth: num('depth'), batch: num('batch'), steps: num('steps'), warmup: num('warmup'), m: num('m'), schedule: opts.schedule, v: num('v') };
const gflop = stepFlops(base) / 1e9;
const rows = [];
console.log(`# pipeline throughput vs one process: MLP ${base.depth}x${base.width}, batch ${base.batch}, ${base.m} micro-batches, ${base.schedule}${base.v > 1 ? ` v=${base.v}` : ''}`);
console.log(`# ${gflop.toFixed(2)} GFLOP per step; ${num('rounds')} alternating rounds of ${num('steps')} timed steps; fastest step (median in brackets)`);
console.log('   p  one-proc ms           pipeline ms           samples/s(1)  samples/s(p)  speed-up  efficiency  bound  bound(measured)  eff/bound');
for (const p of String(opts.ranks).split(',').map(Number)) {
  const single = [];
  const piped = [];
  let costs = null;
  for (let i = 0; i < num('rounds'); i++) {
    single.push(...(await runSingle(base)).times);
    const r = await runPipeline(p, base);
    piped.push(...r.times);
    costs = r.costs;
  }
  const t1 = Math.min(...single);
  const tp = Math.min(...piped);
  const m1 = median(single);
  const mp = median(piped);
  const table = withCommunication(getSchedule(base.schedule)({ ranks: p, microbatches: base.m, stagesPerRank: base.v }));
  const bound = 1 - simulate(table).bubble;
  const boundMeasured = 1 - simulate(table, { ...costs, W: costs.W.some((w) => w > 0) ? costs.W : 0 }).bubble;
  const speedup = t1 / tp;
  const eff = speedup / p;
  const row = { p, m: base.m, schedule: base.schedule, oneProcessMs: t1, pipelineMs: tp, oneProcessMedianMs: m1, pipelineMedianMs: mp, speedup, efficiency: eff, bound, boundMeasured, ratio: eff / bound };
  rows.push(row);
  console.log(
    `${String(p).padStart(4)}  ${`${t1.toFixed(1)} (${m1.toFixed(1)})`.padStart(20)}  ${`${tp.toFixed(1)} (${mp.toFixed(1)})`.padStart(20)}  ${((base.batch * 1000) / t1).toFixed(0).padStart(12)}  ${((base.batch * 1000) / tp).toFixed(0).padStart(12)}  ${speedup.toFixed(2).padStart(8)}  ${eff.toFixed(3).padStart(10)}  ${bound.toFixed(3)}  ${boundMeasured.toFixed(3).padStart(15)}  ${(eff / bound).toFixed(3).padStart(9)}`,
  );
}
if (opts.json) writeFileSync(opts.json, JSON.stringify({ config: base, rows }, null, 2));
const t = rows.find((r) => r.p === 2 && r.m === 8);
if (t) console.log(`target pipeline-efficiency-p2-m8 ${t.ratio.toFixed(2)} >= 0.85 ${t.ratio >= 0.85 ? 'ok' : 'MISS'}`);
