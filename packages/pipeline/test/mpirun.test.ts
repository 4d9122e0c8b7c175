// Jobs under Open MPI's own mpirun (installed from Debian's packages if missing), not under our
// launcher: the ranks find their place in OMPI_COMM_WORLD_* and meet at MASTER_ADDR:MASTER_PORT
// passed with -x, as docs/clusters.md says.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '@hpdl/comm';
import { MPIRUN_LOCAL_ARGS, MPIRUN_LOCAL_ENV, ensureOpenMpi } from '../../../scripts/openmpi.mjs';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

async function mpirun(np: number, script: string, args: string[] = []) {
  const port = await freePort();
  const env = { ...process.env, ...MPIRUN_LOCAL_ENV, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
  return run('mpirun', [...MPIRUN_LOCAL_ARGS, '-np', String(np), '-x', 'MASTER_ADDR', '-x', 'MASTER_PORT', '-x', 'HPDL_BACKEND', process.execPath, script, ...args], { env, timeout: 180_000, cwd: mkdtempSync(join(tmpdir(), 'hpdl-mpirun-')) });
}

describe('under Open MPI mpirun', () => {
  beforeAll(() => {
    if (!ensureOpenMpi()) throw new Error('Open MPI could not be installed (apt-get install openmpi-bin): these tests need its mpirun');
  }, 600_000);

  it('a comm job: collectives and point to point across 2 ranks', async () => {
    const r = await mpirun(2, join(here, '../../comm/test/fixtures/smoke.mjs'));
    expect(r.stdout.replace(/\x1b\[\d+m/g, '')).toContain('got [ 42, 43 ]'); // mpirun's pty: colours
    expect(r.stdout).toMatch(/rank 0\/2: small 1,3,5,7,9 big\[0\]=3 big\[end\]=3/);
    expect(r.stdout).toMatch(/rank 1\/2: small 1,3,5,7,9 big\[0\]=3 big\[end\]=3/);
  }, 180_000);

  it('a two-stage pipeline job trains and predicts', async () => {
    const r = await mpirun(2, join(here, '../examples/quickstart.mjs'), ['--steps', '30', '--out', 'trace']);
    expect(r.stdout).toMatch(/stages of \d+ and \d+ layers/);
    const losses = [...r.stdout.matchAll(/step \d+: loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(losses.length).toBe(4);
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    expect(r.stdout).toMatch(/test accuracy \d+/);
    expect(r.stdout).toMatch(/trace written to/);
  }, 180_000);
});
