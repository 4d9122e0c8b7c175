import { Command, InvalidArgumentError } from 'commander';
import { launch } from './launch.js';
import { parseThreadsPerRank, type ThreadsPerRank } from './threads.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

function threadsArg(v: string): ThreadsPerRank {
  try {
    return parseThreadsPerRank(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

// A closed output pipe (`hpdl launch ... | head`) must not kill the launcher, which would leave the
// ranks writing into a broken pipe of their own: their further output is dropped, the job runs on.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
  });
}

const program = new Command('hpdl').description('hpdl command-line tools').enablePositionalOptions();

program
  .command('launch')
  .description('start N local processes of a script as the ranks of one job')
  .requiredOption('-n, --nprocs <N>', 'number of processes', positiveInt)
  .option('--master-addr <host>', 'rendezvous host', '127.0.0.1')
  .option('--master-port <port>', 'rendezvous port (default: a free one)', positiveInt)
  .option('--gpu-per-rank', 'set CUDA_VISIBLE_DEVICES to each local rank (one GPU per rank)')
  .option('--threads-per-rank <n>', "threads for each rank's compute libraries: a number, auto (the cores shared out) or none", threadsArg, 'auto')
  .option('--no-prefix', 'do not prefix output lines with the rank')
  .option('--max-restarts <n>', 'when a rank fails, start the whole job again up to n times (HPDL_RESTART_COUNT tells the ranks which start it is)', nonNegativeInt, 0)
  .option('--grace <ms>', 'milliseconds between SIGTERM and SIGKILL when stopping ranks', positiveInt, 5000)
  .option('--node-arg <arg...>', 'Node.js options for every rank')
  .argument('<script>', 'the script every rank runs')
  .argument('[args...]', 'arguments for the script')
  .passThroughOptions()
  .action(async (script: string, args: string[], opts) => {
    const r = await launch({
      nprocs: opts.nprocs,
      script,
      args,
      masterAddr: opts.masterAddr,
      masterPort: opts.masterPort,
      gpuPerRank: opts.gpuPerRank,
      threadsPerRank: opts.threadsPerRank,
      prefix: opts.prefix,
      graceMs: opts.grace,
      maxRestarts: opts.maxRestarts,
      nodeArgs: opts.nodeArg,
    });
    process.exitCode = r.code;
  });

program.parseAsync(process.argv).catch((e: Error) => {
  process.stderr.write(`hpdl: ${e.message}\n`);
  process.exitCode = 2;
});
