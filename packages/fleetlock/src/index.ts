/**
 * sluice-fleetlock as a library: the protocol (`protocol.ts`), what the endpoints do to sluice's
 * semaphore (`FleetLockService`), the HTTP server and its metrics. The executable is `main.ts`.
 */
export * from './metrics.js';
export * from './protocol.js';
export * from './server.js';
export * from './service.js';
