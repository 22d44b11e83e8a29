export * from './duration.js';
export * from './errors.js';
export * from './keys.js';
export * from './records.js';
export * from './snapshot.js';
export * from './status.js';
export * from './values.js';
export * from './window.js';
