// Pipeline throughput against the same model trained in one process, beside the schedule's bound,
// on wasm and, where it is available, on the native tensorflow backend (in the same run).
//
//   node bench/pipeline.mjs [--ranks 2] [--m 8] [--schedule 1f1b] [--width 1024] [--depth 8]
//                           [--batch 512] [--steps 8] [--warmup 2] [--rounds 3] [--backends wasm,tensorflow]
//                           [--batch-weight-gradients on|off] [--json out.json]
//
// For each backend and p: `rounds` alternating runs of the one-process reference and the p-rank
// pipeline, each timing `steps` steps after `warmup`. Each side's time per step is the fastest of its
// timed steps: on a shared machine interference only ever slows a step down, so the fastest step is
// the best estimate of each side's own speed (medians are printed too). efficiency = speed-up / p;
// the bound is 1 - bubble of the schedule's table in the simulator (uniform stage costs; also with
// the per-stage costs measured in the run's trace). overhead = the pipeline's mean step over the
// simulator's makespan for the same table with the mean action costs measured in the same steps:
// what the runtime and communication add to the compute.
//
// Every process computes with one thread (tensorflow: TF_NUM_INTRAOP_THREADS = 1): on tensorflow the
// comparison is what p single-thread devices buy over one.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { launch } from '@hpdl/comm';
import { initBackend } from '@hpdl/core';
import { getSchedule, scheduleStagesPerRank, simulate, withCommunication } from '@hpdl/pipeline';
import { stepFlops } from './model.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const opts = new Command()
  .option('--ranks <list>', 'pipeline sizes, comma-separated', '2')
  .option('--m <n>', 'micro-batches', '8')
  .option('--schedule <name>', 'schedule (also zb-v on wasm, for its target, unless --only)', '1f1b')
  .option('--only', 'measure --schedule alone')
  .option('--v <n>', 'stages per rank (default: the schedule\'s)')
  .option('--width <n>', 'hidden width', '1024')
  .option('--depth <n>', 'hidden layers', '8')
  .option('--batch <n>', 'batch size', '512')
  .option('--steps <n>', 'timed steps per run', '8')
  .option('--warmup <n>', 'untimed steps per run', '2')
  .option('--rounds <n>', 'alternating runs of each side', '3')
  .option('--backends <list>', 'backends to measure (those not available are skipped)', 'wasm,tensorflow')
  .option('--batch-weight-gradients <on|off>', "the pipeline's batchWeightGradients (default: the backend's)")
  .option('--json <file>', 'also write the results as JSON')
  .parse()
  .opts();
const num = (k) => Number(opts[k]);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ONE_THREAD = { OMP_NUM_THREADS: '1', TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1' };

function runSingle(cfg, backend) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...ONE_THREAD, HPDL_BACKEND: backend };
    const child = spawn(process.execPath, [join(here, 'single.mjs'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1))) : reject(new Error(`single.mjs exited with ${code}`))));
  });
}

async function runPipeline(p, cfg, backend) {
  let line = '';
  const r = await launch({
    nprocs: p,
    script: join(here, 'pipe.mjs'),
    args: [JSON.stringify(cfg)],
    threadsPerRank: 1,
    env: { HPDL_BACKEND: backend },
    out: (l) => (l.includes('"times"') ? (line = l.replace(/^\[\s*\d+\] /, '')) : undefined),
    err: (l) => console.error(l),
  });
  if (r.code !== 0) throw new Error(`pipeline run at p=${p} on ${backend} failed (rank ${r.firstFailure?.rank})`);
  return JSON.parse(line);
}

async function available(backend) {
  try {
    await initBackend(backend);
    return true;
  } catch {
    return false;
  }
}

const batchW = opts.batchWeightGradients == null ? undefined : opts.batchWeightGradients === 'on';
const base = { width: num('width'), depth: num('depth'), batch: num('batch'), steps: num('steps'), warmup: num('warmup'), m: num('m'), schedule: opts.schedule, batchW };
const gflop = stepFlops(base) / 1e9;
const rows = [];
const targets = [];
const target = (name, value, op, limit) => targets.push(`target ${name} ${value.toFixed(2)} ${op} ${limit.toFixed(2)} ${(op === '>=' ? value >= limit : value <= limit) ? 'ok' : 'MISS'}`);
console.log(`# pipeline throughput vs one process: MLP ${base.depth}x${base.width}, batch ${base.batch}, ${base.m} micro-batches`);
console.log(`# ${gflop.toFixed(2)} GFLOP per step; ${num('rounds')} alternating rounds of ${num('steps')} timed steps; fastest step (median in brackets); one thread per process`);
for (const backend of String(opts.backends).split(',')) {
  if (!(await available(backend))) {
    console.log(`\n## ${backend}: not available here, skipped${backend === 'tensorflow' ? ' (npm run setup:tensorflow adds it)' : ''}`);
    continue;
  }
  console.log(`\n## backend ${backend}`);
  const schedules = opts.only || backend !== 'wasm' || base.schedule === 'zb-v' ? [base.schedule] : [base.schedule, 'zb-v'];
  for (const schedule of schedules) {
    const v = opts.v != null ? num('v') : scheduleStagesPerRank(getSchedule(schedule));
    const cfg = { ...base, schedule, v };
    console.log(`${schedule}${v > 1 ? ` (${v} stages per rank)` : ''}`);
    console.log('   p  one-proc ms           pipeline ms           speed-up  efficiency  bound  bound(measured)  eff/bound  mean ms  makespan ms  overhead');
    for (const p of String(opts.ranks).split(',').map(Number)) {
      const single = [];
      const piped = [];
      const runs = [];
      for (let i = 0; i < num('rounds'); i++) {
        single.push(...(await runSingle(cfg, backend)).times);
        const r = await runPipeline(p, cfg, backend);
        piped.push(...r.times);
        runs.push(r);
      }
      const t1 = Math.min(...single);
      const tp = Math.min(...piped);
      const table = withCommunication(getSchedule(schedule)({ ranks: p, microbatches: base.m, stagesPerRank: v }));
      const bound = 1 - simulate(table).bubble;
      // Each round's mean step against the makespan its own mean costs give; the best round counts.
      const rounds = runs.map((r) => {
        const c = { ...r.costs, W: r.costs.W.some((w) => w > 0) ? r.costs.W : 0 };
        const makespanMs = simulate(table, c).makespan / 1000;
        return { boundMeasured: 1 - simulate(table, c).bubble, meanMs: mean(r.times), makespanMs, overhead: mean(r.times) / makespanMs };
      });
      const best = rounds.reduce((a, b) => (b.overhead < a.overhead ? b : a));
      const speedup = t1 / tp;
      const eff = speedup / p;
      const row = { backend, p, m: base.m, schedule, oneProcessMs: t1, pipelineMs: tp, oneProcessMedianMs: median(single), pipelineMedianMs: median(piped), speedup, efficiency: eff, bound, ratio: eff / bound, ...best, rounds };
      rows.push(row);
      console.log(
        `${String(p).padStart(4)}  ${`${t1.toFixed(1)} (${median(single).toFixed(1)})`.padStart(20)}  ${`${tp.toFixed(1)} (${median(piped).toFixed(1)})`.padStart(20)}  ${speedup.toFixed(2).padStart(8)}  ${eff.toFixed(3).padStart(10)}  ${bound.toFixed(3)}  ${best.boundMeasured.toFixed(3).padStart(15)}  ${(eff / bound).toFixed(3).padStart(9)}  ${best.meanMs.toFixed(1).padStart(7)}  ${best.makespanMs.toFixed(1).padStart(11)}  ${best.overhead.toFixed(3).padStart(8)}`,
      );
      if (p === 2 && base.m === 8) {
        if (backend === 'wasm' && schedule === '1f1b') target('pipeline-efficiency-p2-m8', eff / bound, '>=', 0.85);
        if (backend === 'wasm' && schedule === 'zb-v') target('zbv-efficiency-p2-m8', eff / best.boundMeasured, '>=', 0.85);
        if (backend === 'tensorflow' && schedule === '1f1b') {
          target('pipeline-speedup-tf-p2-m8', speedup, '>=', 1.3);
          target('pipeline-overhead-tf-p2-m8', best.overhead, '<=', 1.08);
        }
      }
    }
  }
}
if (opts.json) writeFileSync(opts.json, JSON.stringify({ config: base, rows }, null, 2));
console.log('');
for (const t of targets) console.log(t);
