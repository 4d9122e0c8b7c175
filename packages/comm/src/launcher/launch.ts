import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import { CommUsageError } from '../errors.js';
import { threadEnv, type ThreadsPerRank } from './threads.js';

/** Options of `launch` (and of `hpdl launch`). */
export interface LaunchOptions {
  /** Number of processes. */
  nprocs: number;
  /** The script each process runs. */
  script: string;
  /** Arguments after the script. */
  args?: string[];
  /** Rendezvous host (default 127.0.0.1). */
  masterAddr?: string;
  /** Rendezvous port (default: a free one). */
  masterPort?: number;
  /** Give each local rank its own GPU: CUDA_VISIBLE_DEVICES = local rank (for tfjs-node-gpu). */
  gpuPerRank?: boolean;
  /**
   * Threads each rank's compute libraries use (OMP_NUM_THREADS, TF_NUM_INTRAOP_THREADS,
   * TF_NUM_INTEROP_THREADS). Default 'auto': the cores shared out among the ranks, where those
   * variables are not set already; 'none' leaves them alone.
   */
  threadsPerRank?: ThreadsPerRank;
  /** Prefix every output line with the rank (default true). */
  prefix?: boolean;
  /** Milliseconds between SIGTERM and SIGKILL when stopping ranks (default 5000). */
  graceMs?: number;
  /** Extra environment for every rank. */
  env?: Record<string, string>;
  /** Node.js options placed before the script (e.g. --max-old-space-size=8192). */
  nodeArgs?: string[];
  /**
   * When a rank fails, stop the others and start the whole job again, up to this many times
   * (torchrun's --max-restarts; default 0). Each start's ranks find its number in HPDL_RESTART_COUNT
   * (0 for the first), so a job can continue from its latest checkpoint.
   */
  maxRestarts?: number;
  /** Where prefixed output goes (default: this process's stdout and stderr). */
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** How a launched job ended. */
export interface LaunchResult {
  /** 0 if every rank exited 0; otherwise non-zero. */
  code: number;
  /** The rank that failed first, and how. */
  firstFailure: { rank: number; code: number | null; signal: NodeJS.Signals | null } | null;
  /** Each rank's exit code (null if killed by a signal), in the last start. */
  codes: (number | null)[];
  /** How many times the job was started again after a failure. */
  restarts: number;
}

const lineWriter = (stream: NodeJS.WriteStream) => (l: string) => void (stream.destroyed || stream.write(`${l}\n`));

/** A TCP port that was free a moment ago on `host`. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `nprocs` local processes of one script with the environment of a job (RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, HPDL_JOB_TOKEN, HPDL_RESTART_COUNT, and
 * each rank's share of the cores for its thread pools), prefixes their output with their rank,
 * forwards SIGINT and SIGTERM, and when one rank fails stops the others, then starts the job again
 * if `maxRestarts` allows.
 */
export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  if (!Number.isInteger(o.nprocs) || o.nprocs < 1) throw new CommUsageError(`launch: the number of processes must be a positive integer, found ${o.nprocs}`);
  const maxRestarts = o.maxRestarts ?? 0;
  if (!Number.isInteger(maxRestarts) || maxRestarts < 0) throw new CommUsageError(`launch: maxRestarts must be a non-negative integer, found ${maxRestarts}`);
  const err = o.err ?? lineWriter(process.stderr);
  for (let restarts = 0; ; restarts++) {
    const r = await launchOnce(o, restarts);
    if (r.code === 0 || r.interrupted || restarts === maxRestarts) return { code: r.code, firstFailure: r.firstFailure, codes: r.codes, restarts };
    err(`hpdl launch: starting the job again (restart ${restarts + 1} of ${maxRestarts})`);
  }
}

/** One start of the job: every rank run to its end. `interrupted`: stopped by SIGINT or SIGTERM sent to us. */
async function launchOnce(o: LaunchOptions, restartCount: number): Promise<Omit<LaunchResult, 'restarts'> & { interrupted: boolean }> {
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (await freePort(masterAddr));
  const token = randomBytes(32).toString('hex');
  const graceMs = o.graceMs ?? 5000;
  const out = o.out ?? lineWriter(process.stdout);
  const err = o.err ?? lineWriter(process.stderr);
  const prefix = o.prefix ?? true;
  const width = String(o.nprocs - 1).length;

  const children: ChildProcess[] = [];
  const codes: (number | null)[] = new Array(o.nprocs).fill(null);
  let firstFailure: LaunchResult['firstFailure'] = null;
  let stopping = false;
  let interrupted = false;
  let killTimer: NodeJS.Timeout | undefined;

  const stopAll = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill(signal);
    killTimer = setTimeout(() => {
      for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL');
    }, graceMs);
    killTimer.unref();
  };

  const forward = (sig: NodeJS.Signals) => () => {
    err(`hpdl launch: received ${sig}, forwarding it to ${o.nprocs} rank(s)`);
    interrupted = true;
    stopAll(sig);
  };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);

  // Exit events arrive in the order the children are reaped, not the order they died: when ranks
  // fail together (one killed, the others failing because it was lost), gather them for a moment
  // and blame a rank killed by a signal before ranks that exited with an error.
  const SETTLE_MS = 250;
  const failures: NonNullable<LaunchResult['firstFailure']>[] = [];
  let settleTimer: NodeJS.Timeout | undefined;
  const noteFailure = (f: NonNullable<LaunchResult['firstFailure']>) => {
    failures.push(f);
    if (settleTimer) return;
    settleTimer = setTimeout(() => {
      const first = failures.find((x) => x.signal != null) ?? failures[0]!;
      firstFailure = first;
      err(`hpdl launch: rank ${first.rank} failed first (${first.signal ? `killed by ${first.signal}` : `exit code ${first.code}`}); stopping the other ranks`);
      stopAll('SIGTERM');
    }, SETTLE_MS);
  };

  const inherited = { ...process.env, ...o.env };
  const threads = threadEnv(o.nprocs, o.threadsPerRank ?? 'auto', inherited);
  if (process.env.HPDL_VERBOSE && Object.keys(threads).length) {
    err(`hpdl launch: ${o.nprocs} local rank(s) on ${availableParallelism()} core(s): ${Object.entries(threads).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  const exits: Promise<void>[] = [];
  for (let rank = 0; rank < o.nprocs; rank++) {
    const env: NodeJS.ProcessEnv = {
      ...inherited,
      ...threads,
      RANK: String(rank),
      WORLD_SIZE: String(o.nprocs),
      LOCAL_RANK: String(rank),
      LOCAL_WORLD_SIZE: String(o.nprocs),
      MASTER_ADDR: masterAddr,
      MASTER_PORT: String(masterPort),
      HPDL_JOB_TOKEN: token,
      HPDL_RESTART_COUNT: String(restartCount),
    };
    if (o.gpuPerRank) env.CUDA_VISIBLE_DEVICES = String(rank);
    const child = spawn(process.execPath, [...(o.nodeArgs ?? []), o.script, ...(o.args ?? [])], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const tag = prefix ? `[${String(rank).padStart(width)}] ` : '';
    createInterface({ input: child.stdout! }).on('line', (l) => out(tag + l));
    createInterface({ input: child.stderr! }).on('line', (l) => err(tag + l));
    exits.push(
      new Promise((resolve) => {
        child.once('error', (e) => {
          err(`hpdl launch: rank ${rank} could not start: ${e.message}`);
          noteFailure({ rank, code: null, signal: null });
          resolve();
        });
        child.once('exit', (code, signal) => {
          codes[rank] = code;
          if (code !== 0 && !stopping) noteFailure({ rank, code, signal });
          // Wait for the output pipes to drain before counting the rank as done.
          let open = 2;
          const done = () => --open === 0 && resolve();
          if (child.stdout!.readableEnded) done(); else child.stdout!.once('end', done);
          if (child.stderr!.readableEnded) done(); else child.stderr!.once('end', done);
        });
      }),
    );
  }
  await Promise.all(exits);
  if (settleTimer && !firstFailure) {
    // Everyone exited within the settling window: decide now.
    clearTimeout(settleTimer);
    firstFailure = failures.find((x) => x.signal != null) ?? failures[0]!;
    err(`hpdl launch: rank ${firstFailure.rank} failed first (${firstFailure.signal ? `killed by ${firstFailure.signal}` : `exit code ${firstFailure.code}`})`);
  }
  clearTimeout(killTimer);
  process.off('SIGINT', onInt);
  process.off('SIGTERM', onTerm);
  const code = firstFailure ? ((firstFailure as { code: number | null }).code || 1) : codes.every((c) => c === 0) ? 0 : 1;
  return { code, firstFailure, codes, interrupted };
}
