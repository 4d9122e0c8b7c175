import { CommUsageError } from './errors.js';

/** Where this process sits in the job, and how to reach rank 0. */
export interface JobInfo {
  rank: number;
  size: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
  /** Which launcher's variables were found. */
  source: string;
  /**
   * How many times the launcher has started this job again after a failure (HPDL_RESTART_COUNT,
   * or torchrun's TORCHELASTIC_RESTART_COUNT; 0 without either).
   */
  restartCount: number;
  /** Something about the environment the user should hear (said once by `init`). */
  warning?: string;
}

// Each launcher's variables: rank, size, local rank. Ours and torchrun's come first.
const SOURCES: [string, string, string, string | null][] = [
  ['hpdl/torchrun', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK'],
  ['Open MPI', 'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK'],
  ['MVAPICH2', 'MV2_COMM_WORLD_RANK', 'MV2_COMM_WORLD_SIZE', 'MV2_COMM_WORLD_LOCAL_RANK'],
  ['MPICH/Intel MPI', 'PMI_RANK', 'PMI_SIZE', 'MPI_LOCALRANKID'],
  ['Slurm', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'],
];

function int(env: NodeJS.ProcessEnv, name: string): number | null {
  const v = env[name];
  if (v == null || v === '') return null;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CommUsageError(`environment variable ${name}=${JSON.stringify(v)} is not a non-negative integer`);
  return n;
}

/**
 * Reads rank, size, local rank and the rendezvous point from the environment of our launcher,
 * torchrun, Open MPI, MVAPICH2, MPICH/Intel MPI or Slurm. With none of them, a single process
 * (rank 0 of 1).
 */
export function detectJob(env: NodeJS.ProcessEnv = process.env): JobInfo {
  let found: JobInfo | null = null;
  let warning: string | undefined;
  for (const [source, r, s, l] of SOURCES) {
    const rank = int(env, r);
    const size = int(env, s);
    if (rank == null || size == null) continue;
    if (source === 'Slurm' && env.SLURM_STEP_ID == null && env.SLURM_STEPID == null) {
      // The batch script of an allocation (or its salloc shell) sees SLURM_PROCID=0 and the
      // allocation's task count, but it is one process: taken for rank 0 it would wait for ranks
      // that never come. Tasks started by srun have a step id.
      if (size > 1) {
        warning = `this process runs in a Slurm allocation of ${size} tasks but was not started by srun, so it runs alone; to use the allocation, start the job with \`srun node <script>\` (or \`hpdl launch\` for the ranks of one node)`;
      }
      continue;
    }
    if (rank >= size) throw new CommUsageError(`${r}=${rank} is not below ${s}=${size} (${source})`);
    found = { rank, size, localRank: (l ? int(env, l) : null) ?? 0, masterAddr: '', masterPort: 0, source, restartCount: 0 };
    break;
  }
  const info = found ?? { rank: 0, size: 1, localRank: 0, masterAddr: '', masterPort: 0, source: 'single process', restartCount: 0 };
  info.restartCount = int(env, 'HPDL_RESTART_COUNT') ?? int(env, 'TORCHELASTIC_RESTART_COUNT') ?? 0;
  if (warning && !found) info.warning = warning;
  info.masterAddr = env.MASTER_ADDR || '127.0.0.1';
  const port = int(env, 'MASTER_PORT');
  if (port == null && info.size > 1) {
    throw new CommUsageError(`a job of ${info.size} ranks (${info.source}) needs MASTER_PORT (and MASTER_ADDR, the host of rank 0) to meet`);
  }
  if (port != null && port > 65535) throw new CommUsageError(`MASTER_PORT=${port} is not a TCP port`);
  info.masterPort = port ?? 0;
  return info;
}

/** Whether a host name or address is this machine's loopback. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
