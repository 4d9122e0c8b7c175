// @hpdl/comm: MPI-style communicators and collectives for Node.js, over authenticated WebSockets.
export { init, World, type InitOptions } from './world.js';
export { Communicator, Request, waitAll, type OpOptions, type CommSettings } from './communicator.js';
export type { Message, MessageStats } from './engine.js';
export { REDUCE_OPS, type ReduceOp } from './collectives/ops.js';
export { type Buf, DTYPES, type DTypeName } from './dtypes.js';
export { detectJob, type JobInfo } from './env.js';
export { CommError, PeerLostError, CommTimeoutError, CollectiveMismatchError, ProtocolError, CommUsageError } from './errors.js';
export { decodeFrame, encodeData, encodeControl, type Frame } from './transport/frame.js';
export { freePort, launch, type LaunchOptions, type LaunchResult } from './launcher/launch.js';
export { threadEnv, parseThreadsPerRank, THREAD_VARIABLES, type ThreadsPerRank } from './launcher/threads.js';
