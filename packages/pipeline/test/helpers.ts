import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, type LaunchOptions, type LaunchResult } from '@hpdl/comm';

export const fixture = (name: string) => join(dirname(fileURLToPath(import.meta.url)), 'fixtures', name);

export interface JobRun extends LaunchResult {
  out: string[];
  err: string[];
  /** JSON lines printed by ranks (after the rank prefix). */
  reports: Record<string, any>[];
}

/** Runs a fixture as a job of n real processes. */
export async function runJob(name: string, n: number, opts: Partial<LaunchOptions> = {}): Promise<JobRun> {
  const out: string[] = [];
  const err: string[] = [];
  const reports: Record<string, any>[] = [];
  const take = (into: string[]) => (l: string) => {
    into.push(l);
    const json = l.replace(/^\[\s*\d+\] /, '');
    if (json.startsWith('{')) {
      try {
        reports.push(JSON.parse(json));
      } catch {
        /* not a report */
      }
    }
  };
  const r = await launch({ nprocs: n, script: fixture(name), graceMs: 2000, ...opts, out: take(out), err: take(err) });
  return { ...r, out, err, reports };
}
