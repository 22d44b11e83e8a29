export * from './admin.js';
export * from './client.js';
export * from './errors.js';
export * from './group-watch.js';
export * from './semaphore.js';
export * from './session.js';
export * from './settings.js';
