#!/usr/bin/env node
// The `hpdl-charrnn` command. This file is committed (not built) so that npm links it on the first
// install, before the workspace's `prepare` script has built dist/.
import { run } from '../dist/charrnn.js';

run();
