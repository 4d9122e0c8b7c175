import { describe, expect, it } from 'vitest';
import { parseThreadsPerRank, threadEnv } from '../src/index.js';

describe('threads per rank', () => {
  it("'auto' shares the cores out among local ranks, at least one each; one process keeps every core", () => {
    expect(threadEnv(2, 'auto', {}, 16)).toEqual({ OMP_NUM_THREADS: '8', TF_NUM_INTRAOP_THREADS: '8', TF_NUM_INTEROP_THREADS: '8' });
    expect(threadEnv(3, 'auto', {}, 16)).toEqual({ OMP_NUM_THREADS: '5', TF_NUM_INTRAOP_THREADS: '5', TF_NUM_INTEROP_THREADS: '5' });
    expect(threadEnv(4, 'auto', {}, 2)).toEqual({ OMP_NUM_THREADS: '1', TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1' });
    expect(threadEnv(1, 'auto', {}, 16)).toEqual({});
  });

  it("'auto' leaves variables the user set alone; a number sets all three; 'none' sets nothing", () => {
    expect(threadEnv(2, 'auto', { OMP_NUM_THREADS: '3' }, 8)).toEqual({ TF_NUM_INTRAOP_THREADS: '4', TF_NUM_INTEROP_THREADS: '4' });
    expect(threadEnv(2, 6, { OMP_NUM_THREADS: '3' }, 8)).toEqual({ OMP_NUM_THREADS: '6', TF_NUM_INTRAOP_THREADS: '6', TF_NUM_INTEROP_THREADS: '6' });
    expect(threadEnv(4, 'none', {}, 8)).toEqual({});
  });

  it('parses the command-line value and refuses anything else, naming it', () => {
    expect(parseThreadsPerRank('auto')).toBe('auto');
    expect(parseThreadsPerRank('none')).toBe('none');
    expect(parseThreadsPerRank('4')).toBe(4);
    for (const v of ['0', '-1', '1.5', 'two', '']) expect(() => parseThreadsPerRank(v)).toThrow(`threads per rank must be a positive integer, 'auto' or 'none', found '${v}'`);
    expect(() => threadEnv(2, 0, {})).toThrow(/found 0/);
  });
});
