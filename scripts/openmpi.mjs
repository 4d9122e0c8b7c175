// Open MPI for what compares with it or runs under its mpirun (comm's benchmark, the mpirun tests):
// installed from Debian's packages when missing, so that no step needs a hand-made setup.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const works = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;

/** Whether mpicc compiles a program (the wrapper comes with openmpi-bin, mpi.h with libopenmpi-dev). */
function compiles() {
  const dir = mkdtempSync(join(tmpdir(), 'hpdl-mpicc-'));
  try {
    writeFileSync(join(dir, 'a.c'), '#include <mpi.h>\nint main(void) { return MPI_SUCCESS; }\n');
    return spawnSync('mpicc', ['-o', join(dir, 'a'), join(dir, 'a.c')], { stdio: 'ignore' }).status === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Makes `mpirun` (and with `compiler`, `mpicc`) available, installing openmpi-bin (and
 * libopenmpi-dev) with apt-get when missing. Returns whether it is available afterwards.
 */
export function ensureOpenMpi({ compiler = false, log = (s) => process.stderr.write(`${s}\n`) } = {}) {
  const have = () => works('mpirun') && (!compiler || compiles());
  if (have()) return true;
  const pkgs = compiler ? ['openmpi-bin', 'libopenmpi-dev'] : ['openmpi-bin'];
  log(`Open MPI is missing: installing ${pkgs.join(' and ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
  const r = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { encoding: 'utf8', env });
  if (r.status !== 0) log(`apt-get install failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-2).join(' | ')}`);
  return have();
}

/** Options of `mpirun` for jobs on this one machine, whoever runs them (root included). */
export const MPIRUN_LOCAL_ARGS = ['--allow-run-as-root', '--oversubscribe', '--bind-to', 'none'];

/** Environment for `mpirun` on this one machine: no remote shell needed, root allowed. */
export const MPIRUN_LOCAL_ENV = { OMPI_MCA_plm_rsh_agent: '', OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };
