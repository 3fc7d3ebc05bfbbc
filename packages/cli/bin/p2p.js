#!/usr/bin/env node
// The built command (npm run build compiles src/ to dist/).
require('../dist/main.js');
