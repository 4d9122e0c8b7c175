import { availableParallelism } from 'node:os';
import { CommUsageError } from '../errors.js';

/**
 * The variables that size the thread pools of the compute libraries a rank may use: OpenMP's, and
 * TensorFlow's intra-op and inter-op pools (tfjs-node). torchrun sets the first the same way.
 */
export const THREAD_VARIABLES = ['OMP_NUM_THREADS', 'TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'] as const;

/** How many threads each local rank computes with: a count, 'auto' (the cores shared out), or 'none' (leave the pools alone). */
export type ThreadsPerRank = number | 'auto' | 'none';

/** Parses `--threads-per-rank`: a positive integer, 'auto' or 'none'. */
export function parseThreadsPerRank(v: string): ThreadsPerRank {
  if (v === 'auto' || v === 'none') return v;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CommUsageError(`threads per rank must be a positive integer, 'auto' or 'none', found '${v}'`);
  return n;
}

/**
 * The thread-pool variables for each of `localRanks` processes on a machine with `cores` cores.
 * 'auto' gives each rank floor(cores / localRanks) threads (at least one) when there is more than
 * one rank, and sets only what `env` (the environment the ranks inherit, with the user's additions)
 * does not set already; a single process keeps every core. A number sets all three variables.
 */
export function threadEnv(localRanks: number, threads: ThreadsPerRank, env: NodeJS.ProcessEnv, cores = availableParallelism()): Record<string, string> {
  if (threads === 'none') return {};
  if (threads === 'auto') {
    if (localRanks <= 1) return {};
    const share = String(Math.max(1, Math.floor(cores / localRanks)));
    return Object.fromEntries(THREAD_VARIABLES.filter((k) => env[k] == null || env[k] === '').map((k) => [k, share]));
  }
  if (!Number.isInteger(threads) || threads < 1) throw new CommUsageError(`threads per rank must be a positive integer, 'auto' or 'none', found ${threads}`);
  return Object.fromEntries(THREAD_VARIABLES.map((k) => [k, String(threads)]));
}
