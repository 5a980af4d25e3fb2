#!/usr/bin/env node
import { runClient } from './client.js';

// No top-level await: the build bundles this entry into a CommonJS file, which starts fastest.
void runClient(process.argv.slice(2), 'syncfail2ban-client').then((code) => process.exit(code));
