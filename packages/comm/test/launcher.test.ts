import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { THREAD_VARIABLES } from '../src/index.js';
import { runJob, fixture } from './helpers.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '../dist/cli.js');

describe('hpdl launch', () => {
  it('starts N ranks with the job environment and prefixes their output with the rank', async () => {
    const r = await runJob('echo.mjs', 3, { gpuPerRank: true });
    expect(r.code).toBe(0);
    for (const rank of [0, 1, 2]) {
      expect(r.out).toContain(`[${rank}] rank=${rank} size=3 local=${rank} cuda=${rank} token=64 port=${r.out[0]!.split('port=')[1]!.split(' ')[0]} restart=0`);
      expect(r.err).toContain(`[${rank}] stderr line from ${rank}`);
    }
  });

  it("gives each rank its share of the cores for its thread pools, unless told otherwise", async () => {
    const cores = availableParallelism();
    const share = Math.max(1, Math.floor(cores / 2));
    const clean = Object.fromEntries(THREAD_VARIABLES.map((k) => [k, '']));
    const auto = await runJob('echo.mjs', 2, { env: clean });
    expect(auto.out.filter((l) => l.includes(`threads omp=${share} intra=${share} inter=${share}`))).toHaveLength(2);
    const given = await runJob('echo.mjs', 2, { env: { ...clean, TF_NUM_INTRAOP_THREADS: '7' }, threadsPerRank: 'auto' });
    expect(given.out.filter((l) => l.includes(`intra=7 `))).toHaveLength(2);
    const fixed = await runJob('echo.mjs', 1, { env: clean, threadsPerRank: 3 });
    expect(fixed.out).toContain('[0] threads omp=3 intra=3 inter=3');
    const cliRun = spawnSync(process.execPath, [cli, 'launch', '-n', '2', '--threads-per-rank', 'none', fixture('echo.mjs')], { encoding: 'utf8', env: { ...process.env, ...clean } });
    expect(cliRun.stdout.match(/threads omp= intra= inter=/g)).toHaveLength(2);
    const bad = spawnSync(process.execPath, [cli, 'launch', '-n', '2', '--threads-per-rank', 'many', fixture('echo.mjs')], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/threads per rank must be a positive integer, 'auto' or 'none', found 'many'/);
  });

  it('stops the other ranks when one fails and exits non-zero naming it', async () => {
    const t0 = Date.now();
    const r = await runJob('echo.mjs', 3, { args: ['fail'] });
    expect(r.code).toBe(3);
    expect(r.firstFailure).toMatchObject({ rank: 1, code: 3 });
    expect(r.err.join('\n')).toMatch(/rank 1 failed first \(exit code 3\); stopping the other ranks/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('--max-restarts starts the whole job again after a failure, telling the ranks which start it is', async () => {
    const r = await runJob('echo.mjs', 2, { args: ['fail-twice'], maxRestarts: 2 });
    expect(r.code).toBe(0);
    expect(r.restarts).toBe(2);
    for (const n of [0, 1, 2]) for (const rank of [0, 1]) expect(r.out.some((l) => l.startsWith(`[${rank}] rank=${rank} size=2`) && l.endsWith(`restart=${n}`))).toBe(true);
    expect(r.err.join('\n')).toMatch(/starting the job again \(restart 1 of 2\)[^]*starting the job again \(restart 2 of 2\)/);
    // Out of restarts: the failure is the job's.
    const out = await runJob('echo.mjs', 2, { args: ['fail-twice'], maxRestarts: 1 });
    expect(out.code).toBe(3);
    expect(out.restarts).toBe(1);
    const cliRun = spawnSync(process.execPath, [cli, 'launch', '-n', '2', '--max-restarts', '2', fixture('echo.mjs'), 'fail-twice'], { encoding: 'utf8' });
    expect(cliRun.status).toBe(0);
    expect(cliRun.stdout).toMatch(/\[1\] rank=1 size=2 .* restart=2/);
    const bad = spawnSync(process.execPath, [cli, 'launch', '-n', '2', '--max-restarts', 'two', fixture('echo.mjs')], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/expected a non-negative integer/);
  });

  it('runs as a command: --help, bad options, and forwarding SIGINT to the ranks', async () => {
    const help = spawnSync(process.execPath, [cli, 'launch', '--help'], { encoding: 'utf8' });
    expect(help.stdout).toMatch(/-n, --nprocs <N>/);
    const bad = spawnSync(process.execPath, [cli, 'launch', '-n', 'zero', fixture('echo.mjs')], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/expected a positive integer/);

    const p = spawn(process.execPath, [cli, 'launch', '-n', '2', fixture('echo.mjs'), 'wait'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
      if ((out.match(/waiting/g) ?? []).length === 2) p.kill('SIGINT');
    });
    p.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    expect(out).toMatch(/\[0\] rank 0 got SIGINT/);
    expect(out).toMatch(/\[1\] rank 1 got SIGINT/);
    expect(err).toMatch(/received SIGINT, forwarding it to 2 rank\(s\)/);
    expect(code).not.toBe(0);
  });

  it('outlives a reader that stops reading (hpdl launch ... | head): the job finishes, exit code 0', async () => {
    const p = spawn(process.execPath, [cli, 'launch', '-n', '2', fixture('echo.mjs'), 'lines'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.stdout.once('data', () => p.stdout.destroy());
    const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    expect(err).not.toMatch(/EPIPE|Error/);
    expect(code).toBe(0);
  });

  it('runs the documented example: every rank ends with the average', () => {
    const r = spawnSync(process.execPath, [cli, 'launch', '-n', '3', join(dirname(fileURLToPath(import.meta.url)), '../examples/allreduce.mjs')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const rank of [0, 1, 2]) expect(r.stdout).toContain(`[${rank}] rank ${rank} of 3: 1 2 3 4`);
  });
});
