// Every rank contributes its rank; after allreduce every rank holds the average.
// Run: npx hpdl launch -n 4 packages/comm/examples/allreduce.mjs
import { init } from '@hpdl/comm';

const world = await init(); // rank, size and rendezvous come from the launcher's environment
const grad = Float32Array.from({ length: 4 }, (_, i) => world.rank + i);
await world.allreduce(grad, 'avg'); // in place, on every rank
console.log(`rank ${world.rank} of ${world.size}: ${Array.from(grad).join(' ')}`);
await world.close();
