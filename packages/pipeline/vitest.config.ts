import { processTests } from '../../vitest.shared.js';

export default processTests;
