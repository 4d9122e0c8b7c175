// The engine's matching of arriving messages to posted receives, in-process: messages are handed to
// it as a connection would (its Sink methods), receives posted as a communicator does.
import { describe, expect, it } from 'vitest';
import { dtypeCode, type Buf } from '../src/dtypes.js';
import { Engine } from '../src/engine.js';
import { CommTimeoutError, CommUsageError, PeerLostError } from '../src/errors.js';
import { Logger } from '../src/log.js';
import { Kind, type DataFrame } from '../src/transport/frame.js';

const GROUP = [0, 1, 2];
const bytesOf = (b: Buf) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const frame = (comm: string, tag: number, b: Buf, chunks = 0, meta: unknown = null): DataFrame => ({
  kind: Kind.Data, comm, tag, dtype: dtypeCode(b), bytes: b.byteLength, chunks, meta, payload: bytesOf(b),
});
const engine = () => new Engine(0, 3, new Logger(0));
const recv = (e: Engine, src: number, tag: number, into?: Buf, timeoutMs = Infinity, comm = 'w') => e.recvData(comm, GROUP, src, tag, into, `recv from ${src} tag ${tag}`, timeoutMs);

describe('engine: matching messages to receives', () => {
  it('keeps the order of each (communicator, source, tag), whether the message or the receive comes first', async () => {
    const e = engine();
    e.onData(1, frame('w', 5, Float32Array.of(1)), bytesOf(Float32Array.of(1)));
    const early = recv(e, 1, 5);
    const waiting = [recv(e, 1, 5), recv(e, 1, 5), recv(e, 2, 5), recv(e, 1, 6), recv(e, 1, 5, undefined, Infinity, 'other')];
    for (const [src, tag, comm, v] of [[1, 6, 'w', 60], [1, 5, 'other', 70], [2, 5, 'w', 20], [1, 5, 'w', 2], [1, 5, 'w', 3]] as const) {
      const b = Float32Array.of(v);
      e.onData(src, frame(comm, tag, b), bytesOf(b));
    }
    expect(Array.from(await early)).toEqual([1]);
    expect((await Promise.all(waiting)).map((b) => b[0])).toEqual([2, 3, 20, 60, 70]);
  });

  it('copies into a posted buffer (a view of its first elements), and refuses the wrong type or a buffer too small', async () => {
    const e = engine();
    const into = new Float64Array(4);
    const got = recv(e, 1, 1, into);
    const b = Float64Array.of(7, 8);
    e.onData(1, frame('w', 1, b), bytesOf(b));
    const r = await got;
    expect(r.buffer).toBe(into.buffer);
    expect(Array.from(r)).toEqual([7, 8]);
    const wrongType = recv(e, 1, 2, new Float32Array(4));
    e.onData(1, frame('w', 2, b), bytesOf(b));
    await expect(wrongType).rejects.toThrow(CommUsageError);
    const small = recv(e, 1, 3, new Float64Array(1));
    e.onData(1, frame('w', 3, b), bytesOf(b));
    await expect(small).rejects.toThrow(/message of 2 elements from rank 1 does not fit a buffer of 1/);
  });

  it('a payload that views a reused read buffer is copied before that buffer is reused', async () => {
    const e = engine();
    const readBuffer = new Uint8Array(8);
    readBuffer.set(bytesOf(Int32Array.of(11, 12)));
    e.onData(2, frame('w', 4, new Int32Array(readBuffer.buffer)), readBuffer);
    readBuffer.fill(0);
    expect(Array.from(await recv(e, 2, 4))).toEqual([11, 12]);
  });

  it('a chunked message goes straight into a posted buffer, or into pool memory when it comes early', async () => {
    const e = engine();
    const into = new Int32Array(3);
    const posted = recv(e, 1, 9, into);
    const msg = Int32Array.of(4, 5, 6);
    const dest = e.onChunkedBegin(1, frame('w', 9, msg, 1), false)!;
    expect(dest.buffer).toBe(into.buffer);
    dest.set(bytesOf(msg));
    e.onChunkedEnd(1, frame('w', 9, msg, 1), dest);
    expect(Array.from(await posted)).toEqual([4, 5, 6]);

    const early = e.onChunkedBegin(2, frame('w', 9, msg, 1), false)!;
    early.set(bytesOf(msg));
    e.onChunkedEnd(2, frame('w', 9, msg, 1), early);
    expect(e.stats.early).toBe(1);
    const later = new Int32Array(3);
    expect(Array.from(await recv(e, 2, 9, later))).toEqual([4, 5, 6]);
    // A message that may wait in the socket (nobody waits on that peer): nothing is taken.
    expect(e.onChunkedBegin(1, frame('w', 10, msg, 1), true)).toBeNull();
    expect(e.stats.held).toBe(1);
  });

  it('a lost rank fails the receives waiting on it and every later one, naming it; others go on', async () => {
    const e = engine();
    const onLost = recv(e, 2, 1);
    const other = e.recvData('pair', [0, 1], 1, 1, undefined, 'recv in a pair', Infinity);
    e.markLost(2, 'connection closed');
    await expect(onLost).rejects.toThrow(PeerLostError);
    await expect(recv(e, 1, 1)).rejects.toMatchObject({ lostRank: 2 }); // the group includes rank 2
    const b = Float32Array.of(1);
    e.onData(1, frame('pair', 1, b), bytesOf(b));
    expect(Array.from(await other)).toEqual([1]);
  });

  it('a receive with a timeout fails with CommTimeoutError naming it', async () => {
    const e = engine();
    await expect(recv(e, 1, 77, undefined, 120)).rejects.toThrow(CommTimeoutError);
    await expect(recv(e, 1, 78, undefined, 120)).rejects.toThrow(/recv from 1 tag 78/);
  });
});
