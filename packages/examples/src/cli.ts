import { realpathSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { detectJob, launch } from '@hpdl/comm';
import { BACKENDS, initBackend, manualSeed, noGrad, type BackendName } from '@hpdl/core';
import { getSchedule, registerSchedule, resolveBalance, scheduleNames, scheduleStagesPerRank, type ScheduleFn } from '@hpdl/pipeline';
import { readLatest, resumeProblem } from './checkpoints.js';
import type { Job, Options } from './job.js';
import { PROGRESS_MARK, ProgressBar, type Progress } from './report.js';
import { runConfig, train } from './trainer.js';

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};
const positive = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};
const nonNegativeInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};

/** Fails with one line on stderr and exit code 2 (bad options or data, before any work). */
function refuse(job: string, msg: string): never {
  process.stderr.write(`hpdl-${job}: ${msg}\n`);
  process.exit(2);
}

/**
 * Makes a schedule given as a file usable by name: `--schedule ./my-schedule.mjs` imports it
 * (default export: the schedule function; optional `name`), registers it, and returns its name.
 */
async function resolveSchedule(value: string): Promise<string> {
  if (!/[/\\]|\.(m?js|cjs)$/.test(value)) {
    getSchedule(value); // throws with the known names
    return value;
  }
  const mod = (await import(pathToFileURL(resolve(value)).href)) as { default?: ScheduleFn; name?: string };
  if (typeof mod.default !== 'function') throw new Error(`${value} must export a schedule function as its default export`);
  const name = typeof mod.name === 'string' && mod.name ? mod.name : basename(value).replace(/\.[^.]+$/, '');
  registerSchedule(name, mod.default);
  return name;
}

/** The command line of a job: `--help` lists every option. */
export async function main<D>(job: Job<D>, argv = process.argv): Promise<void> {
  const d = job.defaults;
  const cmd = new Command(`hpdl-${job.name}`)
    .description(job.summary)
    .option('--stages <n>', 'pipeline stages (processes per replica)', positiveInt('--stages'), d.stages ?? 2)
    .option('--replicas <n>', 'data-parallel replicas of the pipeline', positiveInt('--replicas'), d.replicas ?? 1)
    .option('--microbatches <n>', 'micro-batches per step', positiveInt('--microbatches'), d.microbatches ?? 4)
    .option('--schedule <name>', `pipeline schedule: ${scheduleNames().join(', ')}, or a file exporting your own`, d.schedule ?? '1f1b')
    .option('--balance <how>', 'how layers are split into stages: time (profiled), params, layers, size, or counts such as 6,4', d.balance ?? 'time')
    .option('--stages-per-rank <n>', 'stages per process (default: 2 for the V schedules zb-v and dualpipev, else 1)', positiveInt('--stages-per-rank'), d.stagesPerRank)
    .option('--epochs <n>', 'epochs', positiveInt('--epochs'), d.epochs ?? 1)
    .option('--batch-size <n>', 'samples per step, over all replicas', positiveInt('--batch-size'), d.batchSize ?? 64)
    .option('--lr <x>', 'learning rate (Adam)', positive('--lr'), d.lr ?? 1e-3)
    .option('--backend <name>', `tensorflow, wasm or cpu (default: the best available)`)
    .option('--seed <n>', 'seed of the weights and the data order', nonNegativeInt('--seed'), d.seed ?? 0)
    .option('--out <dir>', 'where metrics, curves, traces and checkpoints go', `runs/${job.name}`)
    .option('--checkpoint-every <n>', 'steps between checkpoints (0: only at the end)', nonNegativeInt('--checkpoint-every'), d.checkpointEvery ?? 200)
    .option('--resume', 'continue from the last checkpoint in --out', false)
    .option('--max-restarts <n>', 'when a process fails, start them all again up to n times, continuing from the latest checkpoint', nonNegativeInt('--max-restarts'), 0)
    .option('--max-steps <n>', 'stop after this many steps in all (a shorter run)', positiveInt('--max-steps'))
    .option('--log-every <n>', 'steps between metric records', positiveInt('--log-every'), d.logEvery ?? 10)
    .option('--no-trace', 'do not write the timeline of the last step');
  for (const [flags, desc, dflt] of job.options) cmd.option(flags, desc, dflt);
  cmd.showHelpAfterError(false);
  cmd.configureOutput({ outputError: (s, write) => write(s.replace(/^error: /, `hpdl-${job.name}: `)) });
  cmd.exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2));
  cmd.parse(argv);
  const o = cmd.opts() as Options;

  if (o.backend && !BACKENDS.includes(o.backend as BackendName)) refuse(job.name, `unknown backend '${o.backend}': use one of ${BACKENDS.join(', ')}`);
  try {
    o.schedule = await resolveSchedule(o.schedule);
  } catch (e) {
    refuse(job.name, (e as Error).message.split('\n')[0]!);
  }
  if (!/^(time|params|layers|size|\d+(,\d+)*)$/.test(o.balance)) refuse(job.name, `--balance '${o.balance}': use time, params, layers, size, or layer counts such as 6,4`);
  if (o.batchSize % o.replicas !== 0) refuse(job.name, `--batch-size ${o.batchSize} must be a multiple of --replicas ${o.replicas}`);
  const perReplica = o.batchSize / o.replicas;
  if (perReplica < o.microbatches) refuse(job.name, `each replica's batch of ${perReplica} cannot be cut into ${o.microbatches} micro-batches`);

  const size = o.stages * o.replicas;
  const info = detectJob();
  if (info.warning) process.stderr.write(`hpdl-${job.name}: ${info.warning}\n`);
  if (info.source === 'single process') {
    // Check what can be checked before starting any process.
    let data: D;
    try {
      await initBackend(o.backend as BackendName | undefined);
      data = job.load(o);
      const perRank = o.stagesPerRank ?? scheduleStagesPerRank(getSchedule(o.schedule));
      const stages = o.stages * perRank;
      manualSeed(o.seed);
      const layers = noGrad(() => job.model(o, data));
      try {
        resolveBalance(layers, stages, /^\d/.test(o.balance) ? o.balance.split(',').map(Number) : 'layers');
      } finally {
        for (const l of layers) for (const p of l.parameters()) p.dispose();
      }
      getSchedule(o.schedule)({ ranks: o.stages, microbatches: o.microbatches, stagesPerRank: perRank });
      const latest = o.resume ? readLatest(join(o.out, 'checkpoints')) : null;
      const why = latest && resumeProblem(latest, size, runConfig(job, o), o.balance);
      if (why) throw new Error(`cannot resume from ${join(o.out, 'checkpoints', latest!.dir)}: ${why}`);
    } catch (e) {
      refuse(job.name, (e as Error).message.split('\n')[0]!);
    }
    if (size === 1) {
      await train(job, o, data);
      return;
    }
    process.exit(await runRanks(job, size, argv, o.maxRestarts));
  }
  if (info.size !== size) refuse(job.name, `started with ${info.size} ranks, but --stages ${o.stages} x --replicas ${o.replicas} needs ${size}`);
  await initBackend(o.backend as BackendName | undefined);
  await train(job, o, job.load(o));
}

/**
 * Starts the ranks of this same command with the launcher. Rank 0's progress lines become one
 * progress bar here; rank 0's other lines are shown as they are, other ranks' with their rank.
 */
async function runRanks<D>(job: Job<D>, size: number, argv: string[], maxRestarts: number): Promise<number> {
  const bar = new ProgressBar();
  const onLine = (l: string, err: boolean) => {
    const m = /^\[\s*(\d+)\] (.*)$/.exec(l);
    const rank = m ? Number(m[1]) : -1;
    const text = m ? m[2]! : l;
    if (rank === 0 && text.startsWith(PROGRESS_MARK)) {
      bar.update(JSON.parse(text.slice(PROGRESS_MARK.length)) as Progress);
      return;
    }
    if (rank === 0) bar.stop();
    (err ? process.stderr : process.stdout).write(`${rank === 0 ? text : l}\n`);
  };
  const r = await launch({
    nprocs: size,
    script: argv[1]!,
    args: argv.slice(2),
    env: { HPDL_EXAMPLES_PROGRESS: 'lines' },
    maxRestarts,
    out: (l) => onLine(l, false),
    err: (l) => onLine(l, true),
  });
  bar.stop();
  return r.code;
}

/** Whether the module at `moduleUrl` is the program Node was started with (directly, or through a bin link). */
function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

/** Runs a job's command line; an error ends the process with one line and exit code 1. */
export function runCommand<D>(job: Job<D>, argv = process.argv): void {
  main(job, argv).catch((e: Error) => {
    process.stderr.write(`hpdl-${job.name}: ${e.message}\n`);
    process.exit(1);
  });
}

/** Runs a job's command line when its module is the program being run (`node dist/gpt.js`, a link to it). */
export function runIfMain<D>(job: Job<D>, moduleUrl: string): void {
  if (isEntryPoint(moduleUrl)) runCommand(job);
}
