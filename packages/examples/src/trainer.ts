import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectJob, init } from '@hpdl/comm';
import { Adam, LRScheduler, backendName, cosine, crossEntropy, fromTf, tf } from '@hpdl/core';
import { Pipeline, gatherTrace, timelineSvg, toChromeTrace, type Balance, type InputSpec } from '@hpdl/pipeline';
import { loadMine, readLatest, resumeProblem, saveAll, truncateMetrics, type Position } from './checkpoints.js';
import type { Job, Options } from './job.js';
import { PROGRESS_MARK, ProgressBar, appendMetric, writeCurves, type Progress } from './report.js';

/** One rank's part of a training run (collective over the job's ranks). */
export async function train<D>(job: Job<D>, o: Options, data: D): Promise<void> {
  const world = await init();
  const reporter = world.rank === 0;
  const say = (s: string) => reporter && process.stdout.write(`${s}\n`);
  const stepsPerEpoch = job.stepsPerEpoch(o, data);
  const total = Math.min(o.maxSteps ?? Infinity, stepsPerEpoch * o.epochs);
  const root = join(o.out, 'checkpoints');
  const metricsPath = join(o.out, 'metrics.jsonl');
  const config = runConfig(job, o);
  if (reporter) mkdirSync(root, { recursive: true });
  await world.barrier();

  // A job started again by `hpdl launch --max-restarts` continues from its latest checkpoint.
  const { restartCount } = detectJob();
  const resuming = o.resume || restartCount > 0;
  const latest = resuming ? readLatest(root) : null;
  if (latest) {
    const why = resumeProblem(latest, world.size, config, o.balance);
    if (why) throw new Error(`cannot resume from ${join(root, latest.dir)}: ${why}`);
  } else if (resuming) {
    say(`no checkpoint in ${root}: starting from the beginning`);
  }

  let optimizer: Adam | null = null;
  const pipe = await Pipeline.create({
    comm: world,
    model: () => job.model(o, data),
    seed: o.seed,
    // A resumed run keeps the split it was saved with (profiling again could choose another).
    balance: latest?.counts ?? balanceOf(o, job.sampleInput(o, data)),
    schedule: o.schedule,
    stagesPerRank: o.stagesPerRank,
    dataParallel: o.replicas,
    microbatches: o.microbatches,
    loss: crossEntropy,
    optimizer: (params) => (optimizer = new Adam(params, { lr: o.lr })),
    sampleInput: job.sampleInput(o, data),
    recompute: o.recompute === true,
  });
  const opt = optimizer!;
  const lrs = new LRScheduler(opt, cosine(stepsPerEpoch * o.epochs, 0.05));

  let pos: Position = { step: 0, epoch: 0, index: 0 };
  if (latest) {
    loadMine(root, latest, world.rank, { model: pipe.module, optimizer: opt, scheduler: lrs });
    pos = { step: latest.step, epoch: latest.epoch, index: latest.index };
    say(`resumed from ${join(root, latest.dir)} at step ${pos.step} (epoch ${pos.epoch + 1}, batch ${pos.index})${restartCount > 0 ? `, restart ${restartCount}` : ''}`);
  }
  if (reporter) {
    if (pos.step === 0) writeFileSync(metricsPath, '');
    else truncateMetrics(metricsPath, pos.step);
  }
  say(
    `${job.name}: ${world.size} process(es) = ${o.replicas} replica(s) x ${o.stages} stage(s)${pipe.numStages > o.stages ? ` holding ${pipe.numStages} stages` : ''} [layers per stage: ${pipe.counts.join(', ')}], ` +
      `${o.schedule}, ${o.microbatches} micro-batches, batch ${o.batchSize}, backend ${backendName()}, ${total} steps`,
  );

  const bar = process.env.HPDL_EXAMPLES_PROGRESS === 'lines' ? null : new ProgressBar();
  const progress = (p: Progress) => {
    if (!reporter) return;
    if (bar) bar.update(p);
    else process.stdout.write(`${PROGRESS_MARK}${JSON.stringify(p)}\n`);
  };
  const t0 = performance.now();
  let lastLog = { t: performance.now(), step: pos.step };
  let lastLoss = NaN;
  let finalMetrics: Record<string, number> | null = null;
  const checkpoint = async () => {
    const dir = await saveAll(root, world, { model: pipe.module, optimizer: opt, scheduler: lrs }, pipe.counts, pos, config);
    say(`checkpoint at step ${pos.step}: ${dir}`);
  };

  while (pos.step < total) {
    const traceThis = o.trace && pos.step === total - 1;
    pipe.setTracing(traceThis);
    const lr = opt.lr;
    const b = job.batch(o, data, pos.epoch, pos.index, pipe.replica);
    const { loss } = await pipe.step(b);
    lrs.step();
    pipe.setTracing(false);
    b.input.dispose();
    b.target.dispose();
    lastLoss = loss;
    pos = { step: pos.step + 1, epoch: pos.epoch, index: pos.index + 1 };
    const now = performance.now();
    const sps = ((pos.step - lastLog.step) * o.batchSize * 1000) / Math.max(1, now - lastLog.t);
    progress({ epoch: pos.epoch + 1, epochs: o.epochs, value: pos.index, total: stepsPerEpoch, loss, samplesPerSec: sps });
    if (reporter && pos.step % o.logEvery === 0) {
      appendMetric(metricsPath, { type: 'step', step: pos.step, epoch: pos.epoch + 1, loss, lr, samplesPerSec: sps, time: new Date().toISOString() });
      lastLog = { t: now, step: pos.step };
    }
    const endOfEpoch = pos.index === stepsPerEpoch;
    if (endOfEpoch || pos.step === total) {
      bar?.stop();
      pipe.eval();
      const m = await job.evaluate(pipe, o, data);
      pipe.train();
      say(`epoch ${pos.epoch + 1}${endOfEpoch ? '' : ' (partial)'}: loss ${loss.toFixed(4)}, ${job.describe(m)}`);
      if (reporter) appendMetric(metricsPath, { type: 'eval', step: pos.step, epoch: pos.epoch + 1, time: new Date().toISOString(), ...m });
      if (endOfEpoch) pos = { step: pos.step, epoch: pos.epoch + 1, index: 0 };
      finalMetrics = m;
    }
    if ((o.checkpointEvery > 0 && pos.step % o.checkpointEvery === 0) || pos.step === total) await checkpoint();
  }
  bar?.stop();

  if (o.trace) {
    const events = await gatherTrace(world, pipe.takeTrace());
    if (events && events.length) {
      writeFileSync(join(o.out, 'timeline.json'), toChromeTrace(events));
      writeFileSync(join(o.out, 'timeline.svg'), timelineSvg(events, { title: `${job.name}: last step, ${o.schedule}, ${o.stages} stages x ${o.replicas} replicas, ${o.microbatches} micro-batches` }));
    }
  }
  const extra = job.finish ? await job.finish(pipe, world, o, data) : [];
  if (reporter) {
    const curves = await writeCurves(metricsPath, join(o.out, 'curves.svg'), job.evalKey, job.evalTitle);
    const secs = (performance.now() - t0) / 1000;
    for (const l of extra) say(l);
    say(`done: ${pos.step} steps in ${secs.toFixed(1)} s; final loss ${lastLoss.toFixed(4)}; ${finalMetrics ? job.describe(finalMetrics) : ''}`);
    say(`metrics ${metricsPath}; curves ${curves.join(', ')}${o.trace ? `; timeline ${join(o.out, 'timeline.json')} and ${join(o.out, 'timeline.svg')}` : ''}; checkpoints ${root}`);
  }
  await world.close();
}

/** --balance: params, layers, time, size, or layer counts such as 6,4. */
function balanceOf(o: Options, spec: InputSpec): Balance {
  const b = o.balance;
  if (b === 'params' || b === 'layers') return b;
  if (b === 'time' || b === 'size') {
    // Profile on one micro-batch's worth of samples.
    const rows = Math.max(1, Math.floor(o.batchSize / o.replicas / o.microbatches));
    const shape = [rows, ...(spec as { shape: number[] }).shape.slice(1)];
    const dtype = (spec as { dtype?: 'float32' | 'int32' }).dtype ?? 'float32';
    const sample = fromTf(dtype === 'int32' ? tf.zeros(shape, 'int32') : tf.randomNormal(shape, 0, 1, 'float32', 1));
    return b === 'time' ? { by: 'time', sample } : { by: 'size', sample };
  }
  return b.split(',').map(Number);
}

/** What a checkpoint must have been written with to be resumed by this run: the model and the data order. */
export function runConfig<D>(job: Job<D>, o: Options): Record<string, unknown> {
  return { job: job.name, stages: o.stages, replicas: o.replicas, stagesPerRank: o.stagesPerRank, seed: o.seed, batchSize: o.batchSize, epochs: o.epochs, ...jobConfig(job, o) };
}

function jobConfig<D>(job: Job<D>, o: Options): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [flags] of job.options) {
    const name = /--([a-z-]+)/.exec(flags)![1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    out[name] = o[name];
  }
  return out;
}
