#!/usr/bin/env node
// The `hpdl` command. This file is committed (not built) so that npm links it on the first install,
// before the workspace's `prepare` script has built dist/.
import '../dist/cli.js';
