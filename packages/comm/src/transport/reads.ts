import { createConnection, Socket, type NetConnectOpts } from 'node:net';

// The one module that reaches into Node.js's and ws's internals: a socket's handle (to read
// straight into receive buffers) and the socket under a WebSocket (to write frames to it directly).

/**
 * Where a socket's bytes go once a connection owns it. Node normally reads every chunk into a fresh
 * buffer that the reader then copies out of; a socket made here reads into the buffer its target
 * names instead, so the payload of a large message is read by the kernel straight into the memory
 * the receive was posted with (one copy fewer, which is most of the cost at several GB/s).
 */
export interface ReadTarget {
  /** The memory the next read goes into: `scratch` (or a prefix of it), or a destination buffer. */
  nextRead(scratch: Buffer): Uint8Array;
  /** `n` bytes were read straight into the destination buffer nextRead returned. */
  onDirect(n: number): void;
  /** Bytes read into scratch, `chunk[0, end)`: valid only during the call. */
  onBytes(chunk: Buffer, end: number): void;
}

const SCRATCH_BYTES = 64 * 1024;
const reads = new WeakMap<Socket, Reads>();

class Reads {
  target: ReadTarget | null = null;
  socket: Socket | null = null;
  private readonly scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  private lastDirect = false;

  readonly onread = {
    buffer: (): Uint8Array => {
      const t = this.target;
      const b = t ? t.nextRead(this.scratch) : this.scratch;
      this.lastDirect = b.buffer !== this.scratch.buffer;
      return b;
    },
    callback: (n: number): void => {
      const t = this.target;
      if (this.lastDirect) t!.onDirect(n);
      else if (t) t.onBytes(this.scratch, n);
      // Before a connection owns the socket (the HTTP upgrade), bytes go out as ordinary 'data'.
      else this.socket?.emit('data', Buffer.from(this.scratch.subarray(0, n)));
    },
  };
}

/** Makes `target` the reader of a socket made by this module; false for any other socket. */
export function ownReads(socket: Socket, target: ReadTarget): boolean {
  const r = reads.get(socket);
  if (!r) return false;
  r.target = target;
  return true;
}

/** Dials like net.connect, with a socket whose reads a ReadTarget can direct. */
export function connectWithReads(opts: { host: string; port: number; noDelay?: boolean }): Socket {
  const r = new Reads();
  const socket = createConnection({ ...opts, onread: r.onread } as unknown as NetConnectOpts);
  r.socket = socket;
  reads.set(socket, r);
  return socket;
}

/**
 * Rewraps a socket accepted by a server made with pauseOnConnect (nothing read yet) so that a
 * ReadTarget can direct its reads: the connection's handle moves to a new Socket made with `onread`,
 * which net.Server offers no option for. Returns null if the socket has no handle any more.
 */
export function adoptWithReads(accepted: Socket): Socket | null {
  const raw = accepted as unknown as { _handle: unknown };
  const handle = raw._handle;
  if (!handle) {
    accepted.destroy();
    return null;
  }
  raw._handle = null;
  accepted.destroy();
  const r = new Reads();
  const socket = new Socket({ handle, readable: true, writable: true, onread: r.onread } as ConstructorParameters<typeof Socket>[0]);
  r.socket = socket;
  reads.set(socket, r);
  return socket;
}

/** The TCP socket under a WebSocket of the `ws` package (its private field: the one place we read it). */
export function socketOf(ws: object): Socket {
  return (ws as { _socket: Socket })._socket;
}
