import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { Communicator, type CommSettings } from './communicator.js';
import { Engine, type MessageStats } from './engine.js';
import { detectJob, isLoopback, type JobInfo } from './env.js';
import { CommUsageError } from './errors.js';
import { Logger } from './log.js';
import { Mesh } from './transport/mesh.js';

/** Options of init; each falls back to an environment variable, then to a default. */
export interface InitOptions {
  /** This rank (default: from the launcher's environment). */
  rank?: number;
  /** Number of ranks (default: from the launcher's environment). */
  size?: number;
  /** Host of rank 0 (MASTER_ADDR, default 127.0.0.1). */
  masterAddr?: string;
  /** Port rank 0 listens on (MASTER_PORT). */
  masterPort?: number;
  /** Secret shared by the job's ranks (HPDL_JOB_TOKEN; our launcher sets a random one). */
  token?: string;
  /** Interface to listen on (HPDL_LISTEN_HOST, default loopback; say 0.0.0.0 for multi-host jobs). */
  listenHost?: string;
  /** Address other ranks reach this one at (HPDL_ADVERTISE_HOST, default the listen host or host name). */
  advertiseHost?: string;
  /** Default timeout of every operation, ms (HPDL_TIMEOUT_MS, default 30 minutes, as torch.distributed). */
  timeoutMs?: number;
  /** How long to wait for every rank to connect, ms (HPDL_RENDEZVOUS_TIMEOUT_MS, default 120 s). */
  rendezvousTimeoutMs?: number;
  /** Heartbeat interval, ms (HPDL_HEARTBEAT_MS, default 1000). */
  heartbeatMs?: number;
  /** Silence after which a peer is declared lost, ms (HPDL_PEER_TIMEOUT_MS, default 30000). */
  peerTimeoutMs?: number;
  /** Check that collectives agree across ranks (HPDL_DEBUG=1 or DETAIL). */
  debug?: boolean;
  /** Largest message accepted, bytes (default 2 GiB - 1). */
  maxMessageBytes?: number;
  /**
   * How long a large message that arrives before its receive is posted may wait unread in the
   * socket, ms (HPDL_HOLD_MS, default 50; 0: never, such messages are read into memory of ours and
   * copied when their receive comes). See docs/comm.md, "Early messages".
   */
  holdMs?: number;
}

function envInt(name: string, zeroOk = false): number | undefined {
  const v = process.env[name];
  if (v == null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !zeroOk)) throw new CommUsageError(`${name}=${JSON.stringify(v)} must be a ${zeroOk ? 'non-negative' : 'positive'} number`);
  return n;
}

/** The communicator of all ranks of the job, with the job's details and its shutdown. */
export class World extends Communicator {
  constructor(
    readonly job: JobInfo,
    engine: Engine,
    private readonly mesh: Mesh,
    settings: CommSettings,
  ) {
    super('world', Array.from({ length: job.size }, (_, i) => i), engine, settings);
  }
  /** This rank's index among the ranks on its host. */
  get localRank(): number {
    return this.job.localRank;
  }
  /** Ranks lost so far, with the reason. */
  get lostRanks(): ReadonlyMap<number, string> {
    return this.engine.lost;
  }
  /**
   * How this rank's large messages met their receives so far: held unread until their receive came
   * (no copy), or read early into memory of ours (one copy more). Many early ones mean receives are
   * posted late; see docs/comm.md, "Early messages".
   */
  get messageStats(): Readonly<MessageStats> {
    return { ...this.engine.stats };
  }
  /** Closes every connection. Call after the last operation, on every rank. */
  async close(): Promise<void> {
    this.mesh.close();
  }
}

/**
 * Joins the job: reads rank, size and the rendezvous point from the environment of our launcher,
 * torchrun, Slurm or an MPI launcher (or from options), connects to every other rank, and returns
 * the world communicator.
 */
export async function init(opts: InitOptions = {}): Promise<World> {
  const job = detectJob();
  if (opts.rank != null) job.rank = opts.rank;
  if (opts.size != null) job.size = opts.size;
  if (opts.masterAddr != null) job.masterAddr = opts.masterAddr;
  if (opts.masterPort != null) job.masterPort = opts.masterPort;
  if (!Number.isInteger(job.size) || job.size < 1 || !Number.isInteger(job.rank) || job.rank < 0 || job.rank >= job.size) {
    throw new CommUsageError(`rank ${job.rank} of size ${job.size} is not a valid place in a job`);
  }
  if (job.size > 1 && !job.masterPort) throw new CommUsageError(`a job of ${job.size} ranks needs a master port (MASTER_PORT or the masterPort option)`);
  if (opts.holdMs != null && !(opts.holdMs >= 0 && Number.isFinite(opts.holdMs))) throw new CommUsageError(`holdMs must be a non-negative number of milliseconds, not ${opts.holdMs}`);
  const log = new Logger(job.rank);
  if (job.warning && opts.size == null) log.warn(job.warning);
  const listenHost = opts.listenHost ?? process.env.HPDL_LISTEN_HOST ?? '127.0.0.1';
  if (job.size > 1 && !isLoopback(job.masterAddr) && isLoopback(listenHost)) {
    throw new CommUsageError(
      `MASTER_ADDR=${job.masterAddr} is not this host's loopback, but ranks listen on loopback only unless asked: set HPDL_LISTEN_HOST (for example 0.0.0.0) for a multi-host job`,
    );
  }
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::';
  const advertiseHost = opts.advertiseHost ?? process.env.HPDL_ADVERTISE_HOST ?? (wildcard ? hostname() : listenHost);
  let token = opts.token ?? process.env.HPDL_JOB_TOKEN;
  if (!token) {
    // Without a secret, at least keep separate jobs apart; the launchers' docs say how to set one.
    token = createHash('sha256')
      .update(['hpdl', job.masterAddr, job.masterPort, process.env.SLURM_JOB_ID, process.env.OMPI_MCA_ess_base_jobid, process.env.PMI_JOBID].join('|'))
      .digest('hex');
    if (job.size > 1) log.info('HPDL_JOB_TOKEN is not set: peers are checked against a token derived from the job, not a secret');
  }
  const settings: CommSettings = {
    timeoutMs: opts.timeoutMs ?? envInt('HPDL_TIMEOUT_MS') ?? 30 * 60 * 1000,
    debug: opts.debug ?? ['1', 'detail', 'true'].includes((process.env.HPDL_DEBUG ?? '').toLowerCase()),
  };
  const engine = new Engine(job.rank, job.size, log);
  const mesh = new Mesh(
    {
      rank: job.rank,
      size: job.size,
      token,
      masterAddr: job.masterAddr,
      masterPort: job.masterPort,
      listenHost,
      advertiseHost,
      rendezvousTimeoutMs: opts.rendezvousTimeoutMs ?? envInt('HPDL_RENDEZVOUS_TIMEOUT_MS') ?? 120_000,
      heartbeatMs: opts.heartbeatMs ?? envInt('HPDL_HEARTBEAT_MS') ?? 1000,
      peerTimeoutMs: opts.peerTimeoutMs ?? envInt('HPDL_PEER_TIMEOUT_MS') ?? 30_000,
      holdMs: opts.holdMs ?? envInt('HPDL_HOLD_MS', true) ?? 50,
      maxMessageBytes: opts.maxMessageBytes ?? 2 ** 31 - 1,
      inlineBytes: 64 * 1024,
      chunkBytes: 4 * 1024 * 1024,
      highWaterBytes: 16 * 1024 * 1024,
      log,
    },
    engine,
    log,
  );
  engine.mesh = mesh;
  mesh.onPeerDead = (rank, reason) => engine.markLost(rank, reason);
  await mesh.start();
  log.debug(`joined a job of ${job.size} ranks (${job.source})`);
  return new World(job, engine, mesh, settings);
}
