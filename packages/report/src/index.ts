export * from './html.js';
export * from './model.js';
export * from './time.js';
