export * from './agent.js';
export * from './checks.js';
export * from './config.js';
export * from './locksmith.js';
export * from './metrics.js';
export * from './sources.js';
export * from './update-sources.js';
export * from './wire.js';
