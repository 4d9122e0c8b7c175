// A communicator's own work in-process: what it checks before anything goes to the wire (every
// wrong argument fails with what was expected and what was found), and its collectives at p = 1,
// where no message is sent. Collectives across processes are in collectives.test.ts.
import { describe, expect, it } from 'vitest';
import { Communicator } from '../src/communicator.js';
import { Engine } from '../src/engine.js';
import { CommUsageError } from '../src/errors.js';
import { Logger } from '../src/log.js';

const settings = { timeoutMs: 1000, debug: false };
/** Rank 0 of a communicator of three; nothing is connected, so only checks can be exercised. */
const ofThree = () => new Communicator('w', [0, 1, 2], new Engine(0, 3, new Logger(0)), settings);
const alone = () => new Communicator('w', [0], new Engine(0, 1, new Logger(0)), settings);

describe('communicator: arguments', () => {
  it('refuses ranks and tags outside their range, naming the operation', async () => {
    const c = ofThree();
    const b = new Float32Array(2);
    await expect(c.send(b, 3, 0)).rejects.toThrow('send to rank 3 (tag 0): destination 3 is not a rank of this communicator of 3');
    await expect(c.send(b, -1)).rejects.toThrow(CommUsageError);
    await expect(c.send(b, 1.5)).rejects.toThrow(CommUsageError);
    await expect(c.recv(7, 0)).rejects.toThrow('recv from rank 7 (tag 0): source 7 is not a rank of this communicator of 3');
    await expect(c.isend(b, 1, -2).wait()).rejects.toThrow('tag -2 must be an integer in [0, 2^31)');
    await expect(c.irecv(1, 2 ** 31).wait()).rejects.toThrow('tag 2147483648 must be an integer in [0, 2^31)');
    await expect(c.broadcast(b, 5)).rejects.toThrow('broadcast: root 5 is not a rank of this communicator of 3');
    await expect(c.gather(b, -1)).rejects.toThrow('gather: root -1 is not a rank');
  });

  it('refuses unknown reductions and buffers of the wrong shape or type', async () => {
    const c = ofThree();
    await expect(c.allreduce(new Float32Array(3), 'band' as never)).rejects.toThrow("unknown reduction 'band'");
    await expect(c.allgather(new Float32Array(2), new Float32Array(5))).rejects.toThrow('allgather: recv has 5 elements, expected 6');
    await expect(c.allgather(new Float32Array(2), new Float64Array(6) as never)).rejects.toThrow('allgather: recv is a Float64Array, expected Float32Array');
    await expect(c.reduceScatter(new Float32Array(4))).rejects.toThrow('reduceScatter: send has 4 elements, not a multiple of the 3 ranks');
    await expect(c.reduceScatter(new Float32Array(6), new Float32Array(3))).rejects.toThrow('reduceScatter: recv has 3 elements, expected 2');
    await expect(c.alltoall(new Int32Array(4))).rejects.toThrow('alltoall: send has 4 elements, not a multiple of the 3 ranks');
    await expect(c.scatter(new Float32Array(5), 2)).rejects.toThrow("scatter: the root's send must have 2 x 3 elements, found 5");
    await expect(c.split(-1)).rejects.toThrow('split: color -1 must be a non-negative integer or null');
  });
});

describe('communicator: collectives of one rank', () => {
  it('leave data as it is, average by one, and return the caller\'s arrays or new ones of the right shape', async () => {
    const c = alone();
    const b = Float32Array.of(1, 2, 3);
    expect(await c.allreduce(b, 'avg')).toBe(b);
    expect(Array.from(b)).toEqual([1, 2, 3]);
    expect(Array.from(await c.allgather(Int32Array.of(4, 5)))).toEqual([4, 5]);
    expect(Array.from(await c.reduceScatter(Float64Array.of(1, 2), undefined, 'max'))).toEqual([1, 2]);
    expect(Array.from((await c.gather(Float32Array.of(9)))!)).toEqual([9]);
    expect(Array.from(await c.scatter(Float32Array.of(6, 7), 2))).toEqual([6, 7]);
    expect(Array.from(await c.alltoall(Uint8Array.of(3)))).toEqual([3]);
    await c.barrier();
    const sub = await c.split(0);
    expect(sub!.size).toBe(1);
    expect(await c.split(null)).toBeNull();
  });
});
