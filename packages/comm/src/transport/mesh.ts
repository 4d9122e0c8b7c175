import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type Server } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { CommError } from '../errors.js';
import type { Logger } from '../log.js';
import { Connection, type ConnectionOptions, type Sink } from './connection.js';
import { Kind, MAX_HEADER, type Frame } from './frame.js';
import { adoptWithReads, connectWithReads } from './reads.js';

/** Time a dialling peer has to complete its HTTP upgrade request. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** How a process joins the job's mesh. */
export interface MeshOptions extends ConnectionOptions {
  size: number;
  masterAddr: string;
  masterPort: number;
  listenHost: string;
  advertiseHost: string;
  rendezvousTimeoutMs: number;
}

/**
 * Every rank's WebSocket server plus one authenticated connection to every other rank. Rank 0
 * listens at the master address and port and hands out the table of where everyone listens; every
 * other rank listens on a port of its own, and the higher rank of each pair dials the lower.
 */
export class Mesh {
  readonly conns: (Connection | null)[];
  private server: Server | null = null;
  private wss: WebSocketServer | null = null;
  private port = 0;
  private readonly registered = new Map<number, [string, number]>();
  private tableWaiter: ((t: [string, number][]) => void) | null = null;
  /** Rank 0: called once the table has gone to every rank. */
  private tableSent: (() => void) | null = null;
  private readyWaiter: (() => void) | null = null;
  private stopped = false;
  /** Called when a connection to a rank dies after the mesh was ready. */
  onPeerDead: (rank: number, reason: string) => void = () => {};
  private ready = false;

  constructor(private readonly opts: MeshOptions, private readonly sink: Sink, private readonly log: Logger) {
    this.conns = new Array(opts.size).fill(null);
  }

  private listen(port: number): Promise<void> {
    // A TCP server whose sockets are rewrapped so that reads can go straight into receive buffers
    // (reads.ts); an HTTP server that listens on nothing parses their upgrade requests, and ws
    // completes the WebSocket handshake.
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: Math.max(this.opts.chunkBytes, MAX_HEADER) + MAX_HEADER + 8,
      clientTracking: true,
    });
    const http = createHttpServer((_req, res) => {
      res.writeHead(426, { 'Content-Type': 'text/plain', Connection: 'close' });
      res.end('this port speaks WebSocket only (an hpdl job)\n');
    });
    http.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => this.adopt(new Connection(ws, 'server', this.opts, this.sink)));
    });
    http.on('clientError', (_e, socket) => socket.destroy());
    const server = createTcpServer({ pauseOnConnect: true, noDelay: true }, (accepted) => {
      const socket = adoptWithReads(accepted);
      if (!socket) return;
      // The unbound HTTP server enforces no header timeout: a peer that never finishes its upgrade
      // request is dropped here (ws clears the timeout once the WebSocket is open).
      socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy());
      http.emit('connection', socket);
    });
    this.server = server;
    this.wss = wss;
    return new Promise((resolve, reject) => {
      server.once('listening', () => {
        const addr = server.address();
        this.port = typeof addr === 'object' && addr ? addr.port : port;
        resolve();
      });
      server.once('error', (e: NodeJS.ErrnoException) => {
        reject(new CommError(`rank ${this.opts.rank} cannot listen on ${this.opts.listenHost}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use (is another job running on it?)' : e.message}`));
      });
      server.listen(port, this.opts.listenHost);
    });
  }

  private adopt(c: Connection): void {
    c.onAuthenticated = () => {
      const peer = c.peer;
      if (peer < 0 || peer >= this.opts.size || peer === this.opts.rank) {
        this.log.warn(`rejected a connection claiming rank ${peer}: not a rank of this job of ${this.opts.size}`);
        c.ws.close(1008, 'bad rank');
        return;
      }
      if (this.conns[peer] && !this.conns[peer]!.closed) {
        this.log.warn(`rejected a second connection from rank ${peer}`);
        c.ws.close(1008, 'duplicate');
        return;
      }
      this.conns[peer] = c;
      this.checkReady();
    };
    c.onControl = (f: Frame) => this.control(c, f);
    c.onDead = (reason) => {
      if (c.peer >= 0 && this.conns[c.peer] === c && !this.stopped) {
        if (this.ready) this.onPeerDead(c.peer, reason);
        else this.log.warn(`connection to rank ${c.peer} died during start-up: ${reason}`);
      }
    };
  }

  private control(c: Connection, f: Frame): void {
    if (f.kind === Kind.Register && this.opts.rank === 0) {
      this.registered.set(c.peer, [f.host, f.port]);
      if (this.registered.size === this.opts.size - 1) {
        const table: [string, number][] = [[this.opts.advertiseHost, this.port]];
        for (let r = 1; r < this.opts.size; r++) table.push(this.registered.get(r)!);
        for (const conn of this.conns) conn?.sendControl({ kind: Kind.Table, table });
        this.tableSent?.();
      }
    } else if (f.kind === Kind.Table && c.peer === 0) {
      this.tableWaiter?.(f.table);
    } else {
      this.log.warn(`ignored an unexpected control frame of kind ${f.kind} from rank ${c.peer}`);
    }
  }

  private checkReady(): void {
    if (this.conns.every((c, r) => r === this.opts.rank || (c && c.authenticated))) {
      this.ready = true;
      this.readyWaiter?.();
    }
  }

  private dial(rank: number, host: string, port: number, deadline: number): Promise<Connection> {
    const url = `ws://${host.includes(':') ? `[${host}]` : host}:${port}`;
    return new Promise((resolve, reject) => {
      const attempt = () => {
        if (this.stopped) return reject(new CommError('mesh stopped'));
        const ws = new WebSocket(url, {
          perMessageDeflate: false,
          maxPayload: Math.max(this.opts.chunkBytes, MAX_HEADER) + MAX_HEADER + 8,
          // Masking guards browsers against proxy cache poisoning; between our own processes an
          // all-zero mask lets ws skip the copy that masking costs.
          generateMask: (mask: Buffer) => void mask.fill(0),
          // A socket whose reads the connection can direct (reads.ts).
          createConnection: ((o: { host?: string; port?: number }) => connectWithReads({ host: o.host ?? host, port: o.port ?? port, noDelay: true })) as never,
        });
        const c = new Connection(ws, 'client', this.opts, this.sink, rank);
        let opened = false;
        ws.once('open', () => (opened = true));
        ws.once('error', () => {
          if (opened) return;
          if (Date.now() > deadline) reject(new CommError(`rank ${this.opts.rank} could not reach rank ${rank} at ${url} before the rendezvous timeout`));
          else setTimeout(attempt, 100).unref();
        });
        this.adopt(c);
        const auth = c.onAuthenticated;
        c.onAuthenticated = () => {
          auth();
          resolve(c);
        };
      };
      attempt();
    });
  }

  /** Listens, meets at rank 0, and connects to every rank; fails naming who is missing at the deadline. */
  async start(): Promise<void> {
    const { rank, size, rendezvousTimeoutMs } = this.opts;
    if (size === 1) return;
    const deadline = Date.now() + rendezvousTimeoutMs;
    await this.listen(rank === 0 ? this.opts.masterPort : 0);
    const ready = new Promise<void>((resolve) => (this.readyWaiter = resolve));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const missing = this.conns.map((c, r) => (r !== rank && !(c && c.authenticated) ? r : -1)).filter((r) => r >= 0);
        reject(new CommError(`rendezvous at ${this.opts.masterAddr}:${this.opts.masterPort} timed out after ${rendezvousTimeoutMs} ms: rank ${rank} has no connection to rank(s) ${missing.join(', ')}`));
      }, rendezvousTimeoutMs);
      timer.unref();
    });
    // Rank 0 is ready only once every rank has the table too: it may send, or close, at once, and a
    // rank still waiting for the table would never get it.
    const distributed = rank === 0 ? new Promise<void>((resolve) => (this.tableSent = resolve)) : Promise.resolve();
    const work = (async () => {
      if (rank !== 0) {
        const table = new Promise<[string, number][]>((resolve) => (this.tableWaiter = resolve));
        const master = await this.dial(0, this.opts.masterAddr, this.opts.masterPort, deadline);
        master.sendControl({ kind: Kind.Register, host: this.opts.advertiseHost, port: this.port });
        const t = await table;
        await Promise.all(t.slice(1, rank).map(([host, port], i) => this.dial(i + 1, host, port, deadline)));
      }
      await Promise.all([ready, distributed]);
    })();
    try {
      await Promise.race([work, timeout]);
      // From here on only receives wait on what a peer sends, and a receive ends a hold.
      for (const c of this.conns) if (c) c.holds.enabled = true;
    } catch (e) {
      this.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes every connection and the server. */
  close(): void {
    this.stopped = true;
    for (const c of this.conns) c?.close();
    this.wss?.close();
    this.server?.close();
  }
}
