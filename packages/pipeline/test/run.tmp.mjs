import { launch } from '@hpdl/comm';
const n = Number(process.argv[2]); const script = process.argv[3];
const r = await launch({ nprocs: n, script, args: process.argv.slice(4) });
console.log('exit', r.code, JSON.stringify(r.firstFailure));
