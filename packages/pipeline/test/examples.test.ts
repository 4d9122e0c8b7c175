import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const example = (name: string) => join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', name);

describe('examples run as documented', () => {
  it('quickstart: two stages learn the task, and the trace files are written', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hpdl-qs-'));
    const { stdout } = await run(process.execPath, [example('quickstart.mjs'), '--steps', '40', '--out', dir], { timeout: 120_000 });
    const losses = [...stdout.matchAll(/step (\d+): loss ([\d.]+)/g)].map((m) => Number(m[2]));
    expect(losses.length).toBeGreaterThanOrEqual(4);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 4);
    const acc = Number(/test accuracy ([\d.]+)%/.exec(stdout)![1]);
    expect(acc).toBeGreaterThan(90);
    expect(JSON.parse(readFileSync(join(dir, 'trace.json'), 'utf8')).traceEvents.length).toBeGreaterThan(20);
    expect(readFileSync(join(dir, 'timeline.svg'), 'utf8')).toMatch(/^<svg/);
  }, 120_000);

  it('custom schedule tutorial: validates, simulates, catches a deadlock, trains', async () => {
    const { stdout } = await run(process.execPath, [example('custom-schedule.mjs')], { timeout: 120_000 });
    expect(stdout).toMatch(/^rank 0: 0F0 0SEND_F0 0F1/m);
    const span = (n: string) => Number(new RegExp(`${n}\\s+p=4 m=8: makespan ([\\d.]+)`).exec(stdout)![1]);
    expect(span('eager-1f1b')).toBeLessThan(span('1f1b'));
    expect(stdout).toMatch(/deadlock: rank 0 waits at 0RECV_B0/);
    const [, a, b] = /loss ([\d.]+) -> ([\d.]+)/.exec(stdout)!;
    expect(Number(b)).toBeLessThan(Number(a) / 4);
  }, 120_000);
});
