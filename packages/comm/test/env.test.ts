import { describe, expect, it } from 'vitest';
import { CommUsageError, detectJob } from '../src/index.js';

describe('rank, size and rendezvous from launchers\' environments', () => {
  const cases: [string, Record<string, string>, [number, number, number]][] = [
    ['our launcher / torchrun', { RANK: '2', WORLD_SIZE: '4', LOCAL_RANK: '1' }, [2, 4, 1]],
    ['Slurm srun', { SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_STEP_ID: '0' }, [5, 8, 1]],
    ['Open MPI mpirun', { OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '6', OMPI_COMM_WORLD_LOCAL_RANK: '0' }, [3, 6, 0]],
    ['MPICH / Intel MPI', { PMI_RANK: '1', PMI_SIZE: '2', MPI_LOCALRANKID: '1' }, [1, 2, 1]],
    ['MVAPICH2', { MV2_COMM_WORLD_RANK: '0', MV2_COMM_WORLD_SIZE: '3', MV2_COMM_WORLD_LOCAL_RANK: '0' }, [0, 3, 0]],
  ];
  it.each(cases)('%s', (_name, env, [rank, size, local]) => {
    const j = detectJob({ ...env, MASTER_ADDR: 'node01', MASTER_PORT: '29500' });
    expect([j.rank, j.size, j.localRank]).toEqual([rank, size, local]);
    expect([j.masterAddr, j.masterPort]).toEqual(['node01', 29500]);
  });

  it('is a single process without any launcher', () => {
    expect(detectJob({})).toMatchObject({ rank: 0, size: 1, source: 'single process' });
  });

  it('a Slurm batch script (no srun step) runs alone and says why, instead of waiting for ranks that never come', () => {
    const j = detectJob({ SLURM_PROCID: '0', SLURM_NTASKS: '4', SLURM_LOCALID: '0', SLURM_JOB_ID: '77' });
    expect(j).toMatchObject({ rank: 0, size: 1, source: 'single process' });
    expect(j.warning).toMatch(/Slurm allocation of 4 tasks but was not started by srun.*srun node <script>/);
    expect(detectJob({ SLURM_PROCID: '0', SLURM_NTASKS: '1' }).warning).toBeUndefined();
    // Our launcher inside an allocation wins.
    expect(detectJob({ SLURM_PROCID: '0', SLURM_NTASKS: '4', RANK: '1', WORLD_SIZE: '2', MASTER_PORT: '5' })).toMatchObject({ rank: 1, size: 2 });
  });

  it('reads the restart count of our launcher or torchrun', () => {
    expect(detectJob({}).restartCount).toBe(0);
    expect(detectJob({ HPDL_RESTART_COUNT: '2' }).restartCount).toBe(2);
    expect(detectJob({ TORCHELASTIC_RESTART_COUNT: '1' }).restartCount).toBe(1);
  });

  it('explains what is missing or wrong', () => {
    expect(() => detectJob({ RANK: '0', WORLD_SIZE: '2' })).toThrow(/needs MASTER_PORT/);
    expect(() => detectJob({ RANK: '2', WORLD_SIZE: '2', MASTER_PORT: '1' })).toThrow(/RANK=2 is not below WORLD_SIZE=2/);
    expect(() => detectJob({ RANK: 'x', WORLD_SIZE: '2' })).toThrow(CommUsageError);
    expect(() => detectJob({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '70000' })).toThrow(/not a TCP port/);
  });
});
